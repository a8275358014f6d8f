"""The codec's inference transform (encodec/inference.py): same function, same names, faster modules in place."""

import pytest
import torch
import torch.nn.functional as F

from encodec import EncodecModel, get_preset
from encodec.inference import (
    InPlaceResidualBlock,
    PointwiseConv1d,
    TwoTapConvTranspose1d,
    conv_transpose1d_two_taps,
    pointwise_conv1d,
    prepare_codec_for_inference,
)


@pytest.mark.parametrize("stride", [2, 4, 5, 8])
@pytest.mark.parametrize("bias", [True, False])
def test_two_taps_equal_the_transposed_conv(stride, bias):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11)
    weight = torch.randn(3, 5, 2 * stride)
    b = torch.randn(5) if bias else None
    want = F.conv_transpose1d(x, weight, b, stride)
    torch.testing.assert_close(conv_transpose1d_two_taps(x, weight, b, stride), want)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_equals_the_1x1_conv(batch, bias):
    torch.manual_seed(0)
    x, weight = torch.randn(batch, 6, 13), torch.randn(4, 6, 1)
    b = torch.randn(4) if bias else None
    torch.testing.assert_close(pointwise_conv1d(x, weight, b), F.conv1d(x, weight, b))


@pytest.mark.parametrize("preset", ["encodec-32khz", "encodec-24khz"])
def test_prepared_codec_computes_the_same_with_the_same_names(preset):
    torch.manual_seed(0)
    config = get_preset(preset, n_filters=4, dimension=8, n_q=2, bins=16)
    reference = EncodecModel(config).eval()
    for book in reference.quantizer.layers:
        book.codebook.embed.normal_()
    model = EncodecModel(config).eval()
    model.load_state_dict(reference.state_dict())
    names_before = set(reference.fold_weight_norm().state_dict())

    assert prepare_codec_for_inference(model) is model
    kinds = {type(m) for m in model.modules()}
    assert {PointwiseConv1d, TwoTapConvTranspose1d, InPlaceResidualBlock} <= kinds
    assert set(model.state_dict()) == names_before  # exports and checkpoints are unchanged
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())

    wav = torch.randn(2, 1, 3 * config.hop_length + 17)
    with torch.no_grad():
        latents, want_latents = model.encoder(wav), reference.encoder(wav)
        torch.testing.assert_close(latents, want_latents, rtol=1e-4, atol=1e-5)
        codes = reference.encode(wav)
        assert torch.equal(model.encode(wav), codes)
        torch.testing.assert_close(model.decode(codes), reference.decode(codes), rtol=1e-4, atol=1e-5)


def test_in_place_activations_leave_the_input_alone():
    torch.manual_seed(0)
    model = prepare_codec_for_inference(EncodecModel(get_preset("encodec-32khz", n_filters=4, dimension=8)))
    wav = torch.randn(1, 1, 1000)
    copy = wav.clone()
    with torch.no_grad():
        model.encoder(wav)
    assert torch.equal(wav, copy)

"""Shapes and invariants of the SEANet autoencoder and EncodecModel."""

import pytest
import torch

from encodec import EncodecModel, get_preset


@pytest.fixture(scope="module")
def musicgen_codec():
    torch.manual_seed(0)
    return EncodecModel(get_preset("encodec-32khz")).eval()


def test_one_second_of_32khz_audio_gives_50_latent_frames(musicgen_codec):
    wav = torch.randn(1, 1, 32_000) * 0.1
    with torch.no_grad():
        latents = musicgen_codec.encoder(wav)
        assert latents.shape == (1, 128, 50)
        assert musicgen_codec.decoder(latents).shape == (1, 1, 32_000)


def test_public_attributes(musicgen_codec):
    c = musicgen_codec
    assert (c.sample_rate, c.channels, c.frame_rate, c.num_codebooks, c.cardinality) == (32_000, 1, 50, 4, 2048)
    assert c.hop_length == 640
    assert c.config.bandwidth == pytest.approx(2.2)


@pytest.mark.parametrize("length", [1, 639, 641, 12_345])
def test_lengths_that_are_not_multiples_of_the_hop(length):
    torch.manual_seed(0)
    model = EncodecModel(get_preset("encodec-32khz", n_filters=4, dimension=8, bins=16)).eval()
    wav = torch.randn(2, 1, length) * 0.1
    codes = model.encode(wav)
    frames = -(-length // 640)
    assert codes.shape == (2, 4, frames) and codes.dtype == torch.int64
    assert model.decode(codes).shape == (2, 1, frames * 640)
    model.train()
    out = model(wav)
    assert out.audio.shape == wav.shape
    assert out.codes.shape == (2, 4, frames)


def test_24khz_preset_is_causal_with_conv_skips():
    config = get_preset("encodec-24khz")
    assert (config.frame_rate, config.n_q, config.bins, config.causal, config.true_skip) == (75, 32, 1024, True, False)
    assert [config.num_codebooks_for_bandwidth(bw) for bw in (1.5, 3, 6, 12, 24)] == [2, 4, 8, 16, 32]
    model = EncodecModel(get_preset("encodec-24khz", n_filters=4, dimension=8, n_q=4, bins=1024)).eval()
    wav = torch.randn(1, 1, 24_000)
    assert model.encoder(wav).shape == (1, 8, 75)
    assert model.encode(wav, bandwidth=1.5).shape == (1, 2, 75)


def test_causal_encoder_does_not_look_ahead():
    # With zero padding. Reflect padding (the published 24 kHz model's) mirrors samples 1..p into the left
    # padding, so the first frames of each layer see a few frames ahead: causal except at the very start.
    torch.manual_seed(0)
    config = get_preset("encodec-24khz", n_filters=4, dimension=8, n_q=2, bins=16, pad_mode="constant")
    model = EncodecModel(config).eval()
    wav = torch.randn(1, 1, 3200)
    changed = wav.clone()
    changed[..., 1600:] = 0
    with torch.no_grad():
        a, b = model.encoder(wav), model.encoder(changed)
    # frames whose window ends before sample 1600 (frame t covers samples < (t + 1) * 320) are unchanged
    assert torch.equal(a[..., :5], b[..., :5])
    assert not torch.equal(a[..., 5:], b[..., 5:])


def test_weight_norm_folding_keeps_outputs():
    torch.manual_seed(0)
    model = EncodecModel(get_preset("encodec-32khz", n_filters=4, dimension=8, bins=16)).eval()
    for layer in model.quantizer.layers:
        layer.codebook.embed.normal_()
    wav = torch.randn(1, 1, 5000)
    codes = model.encode(wav)
    audio = model.decode(codes)
    assert not model.is_folded
    model.fold_weight_norm()
    assert model.is_folded
    assert torch.equal(model.encode(wav), codes)
    torch.testing.assert_close(model.decode(codes), audio, atol=1e-6, rtol=0)


def test_wrong_input_shape_is_a_clear_error(musicgen_codec):
    with pytest.raises(ValueError, match=r"\[B, 1, N\]"):
        musicgen_codec.encode(torch.randn(1, 2, 100))
    with pytest.raises(ValueError, match=r"\[B, K, T\]"):
        musicgen_codec.decode(torch.zeros(4, 10, dtype=torch.long))


def test_gradients_reach_the_encoder_through_the_quantizer():
    torch.manual_seed(0)
    model = EncodecModel(get_preset("encodec-32khz", n_filters=4, dimension=8, bins=16)).train()
    out = model(torch.randn(2, 1, 2000) * 0.1)
    (out.audio.pow(2).mean() + out.commitment_loss).backward()
    first_conv = model.encoder.layers[0].conv.parametrizations.weight.original1
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0

"""Padding arithmetic of the padded convolutions (encodec/conv.py)."""

import math

import pytest
import torch

from encodec.conv import PaddedConv1d, PaddedConvTranspose1d, extra_padding_for_conv1d, pad1d, unpad1d


@pytest.mark.parametrize("mode", ["constant", "reflect"])
@pytest.mark.parametrize(("left", "right"), [(0, 5), (5, 5), (0, 0), (10, 30)])
def test_pad1d_lengths_even_when_pad_exceeds_input(mode, left, right):
    x = torch.randn(2, 3, 20)
    y = pad1d(x, (left, right), mode)
    assert y.shape[-1] == 20 + left + right
    assert torch.equal(y[..., left : left + 20], x)


def test_pad1d_reflect_values():
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    assert pad1d(x, (2, 1), "reflect").tolist() == [[[3.0, 2.0, 1.0, 2.0, 3.0, 2.0]]]
    # Wider than the input: zeros appended first, then reflected, then cut again.
    assert pad1d(x, (0, 4), "reflect").tolist() == [[[1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 3.0]]]


def test_pad1d_and_unpad1d_reject_negative():
    x = torch.randn(1, 1, 10)
    with pytest.raises(ValueError):
        pad1d(x, (-1, 0))
    with pytest.raises(ValueError):
        unpad1d(x, (0, -1))


@pytest.mark.parametrize(("left", "right", "length"), [(5, 5, 10), (0, 5, 15), (5, 0, 15), (0, 0, 20)])
def test_unpad1d(left, right, length):
    x = torch.arange(20.0)[None, None]
    y = unpad1d(x, (left, right))
    assert y.shape[-1] == length
    assert y[0, 0, 0].item() == left


def test_extra_padding_worked_example():
    # Docstring example: length 5, kernel 4, stride 2 needs one extra zero for 3 full windows.
    assert extra_padding_for_conv1d(5, 4, 2, 2) == 1
    assert extra_padding_for_conv1d(6, 4, 2, 2) == 0


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("kernel", "stride", "dilation"), [(4, 1, 1), (4, 2, 1), (3, 1, 3), (10, 5, 1), (3, 2, 3)])
def test_conv_gives_ceil_length_over_stride(causal, kernel, stride, dilation):
    torch.manual_seed(0)
    conv = PaddedConv1d(2, 3, kernel, stride, dilation, causal=causal, pad_mode="reflect")
    for length in [1, 2, 7, 64, 1001, int(torch.randint(1, 5000, ()).item())]:
        y = conv(torch.randn(1, 2, length))
        assert y.shape == (1, 3, math.ceil(length / stride)), (length, y.shape)


@pytest.mark.parametrize(("causal", "trim"), [(False, 1.0), (True, 1.0), (True, 0.5), (True, 0.0)])
@pytest.mark.parametrize(("kernel", "stride"), [(4, 1), (4, 2), (3, 1), (10, 5)])
def test_conv_transpose_gives_length_times_stride(causal, trim, kernel, stride):
    conv = PaddedConvTranspose1d(2, 3, kernel, stride, causal=causal, trim_right_ratio=trim)
    for length in [1, 5, 77]:
        assert conv(torch.randn(1, 2, length)).shape == (1, 3, length * stride)


def test_conv_transpose_trim_ratio_needs_causal():
    with pytest.raises(ValueError, match="causal"):
        PaddedConvTranspose1d(2, 2, 4, 2, causal=False, trim_right_ratio=0.5)


def test_causal_conv_does_not_look_ahead():
    conv = PaddedConv1d(1, 1, 7, stride=1, causal=True, pad_mode="constant")
    x = torch.randn(1, 1, 50)
    x2 = x.clone()
    x2[..., 30:] += 1.0
    assert torch.equal(conv(x)[..., :30], conv(x2)[..., :30])
    assert not torch.equal(conv(x)[..., 30:], conv(x2)[..., 30:])


@pytest.mark.parametrize("norm", ["weight_norm", "time_group_norm", "none"])
def test_norm_kinds(norm):
    conv = PaddedConv1d(2, 4, 3, norm=norm)
    assert isinstance(conv.norm, torch.nn.GroupNorm) == (norm == "time_group_norm")
    assert hasattr(conv.conv, "parametrizations") == (norm == "weight_norm")
    assert conv(torch.randn(2, 2, 11)).shape == (2, 4, 11)
    with pytest.raises(ValueError, match="unknown norm"):
        PaddedConv1d(2, 4, 3, norm="batch_norm")

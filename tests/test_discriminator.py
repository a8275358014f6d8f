import random

import torch
from torch.nn.utils import parametrize

from encodec.discriminator import MultiScaleSTFTDiscriminator, STFTDiscriminator


def test_small_discriminator_shapes():
    # audiocraft tests/adversarial/test_discriminators.py, with N long enough for center=False STFTs.
    n_ffts, hops = [128, 256, 64], [32, 64, 16]
    disc = MultiScaleSTFTDiscriminator(filters=4, in_channels=2, n_ffts=n_ffts, hop_lengths=hops,
                                       win_lengths=n_ffts)
    N = random.randrange(256, 20000)
    logits, fmaps = disc(torch.randn(2, 2, N))
    assert len(logits) == len(fmaps) == 3
    for logit, fmap, n_fft, hop in zip(logits, fmaps, n_ffts, hops, strict=True):
        frames, bins = (N - n_fft) // hop + 1, n_fft // 2 + 1
        assert logit.shape == (2, 1, frames, -(-bins // 8))  # frequency halved 3 times, rounding up
        assert len(fmap) == 5
        assert all(f.shape[:3] == (2, 4, frames) for f in fmap)


def test_default_discriminator_matches_the_published_layout():
    disc = MultiScaleSTFTDiscriminator()
    N = random.randrange(2048, 6000)
    logits, fmaps = disc(torch.randn(2, 1, N))
    assert len(logits) == len(fmaps) == 5
    for logit, fmap in zip(logits, fmaps, strict=True):
        assert logit.dim() == 4 and logit.shape[:2] == (2, 1)
        assert len(fmap) == 5 and all(f.shape[:2] == (2, 32) for f in fmap)
    sub = disc.discriminators[0]
    assert not parametrize.is_parametrized(sub.convs[0])  # reference quirk: no weight norm on the first conv
    assert all(parametrize.is_parametrized(conv) for conv in [*sub.convs[1:], sub.conv_post])
    assert [conv.dilation for conv in sub.convs[1:4]] == [(1, 1), (2, 1), (4, 1)]


def test_gradient_flows_to_the_input():
    disc = STFTDiscriminator(filters=4, in_channels=2, n_fft=256, hop_length=64, win_length=256)
    x = torch.randn(2, 2, 2000, requires_grad=True)
    logits, fmaps = disc(x)
    (logits.sum() + sum(f.sum() for f in fmaps)).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_spectrogram_stacks_real_then_imaginary_parts():
    disc = STFTDiscriminator(filters=4, n_fft=64, hop_length=16, win_length=64, normalized=False)
    x = torch.randn(1, 1, 640)
    z = disc.spectrogram(x)  # [1, 2, T, F]
    window = torch.hann_window(64)
    expected = torch.stft(x[0], 64, 16, 64, window, center=False, return_complex=True)[0].T  # [T, F]
    torch.testing.assert_close(z[0, 0], expected.real)
    torch.testing.assert_close(z[0, 1], expected.imag)

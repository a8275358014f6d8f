import math
import random

import pytest
import torch

from encodec.losses import (
    MelL1Loss,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_losses,
    hinge_discriminator_loss,
    hinge_generator_loss,
    mse_discriminator_loss,
    mse_generator_loss,
    si_snr_loss,
    waveform_l1_loss,
    waveform_l2_loss,
)
from encodec.mel import MelSpectrogram, mel_filter_bank

SAMPLE_RATE = 22050


def _reconstruction_losses():
    return {
        "l1": waveform_l1_loss,
        "l2": waveform_l2_loss,
        "mel": MelL1Loss(SAMPLE_RATE),
        "msspec": MultiScaleMelLoss(SAMPLE_RATE),
        "mrstft": MultiResolutionSTFTLoss(),
    }


# Adversarial losses: known values (audiocraft tests/adversarial/test_losses.py).

def test_hinge_generator_loss():
    assert hinge_generator_loss(torch.tensor([1.0, 2.0, 3.0])).item() == -2.0
    assert hinge_generator_loss(torch.tensor([])).item() == 0.0


def test_mse_generator_loss():
    assert mse_generator_loss(torch.tensor([1.0, 1.0, 1.0])).item() == 0.0
    assert mse_generator_loss(torch.tensor([2.0, 5.0, 5.0])).item() == 11.0
    assert mse_generator_loss(torch.tensor([])).item() == 0.0


def test_hinge_discriminator_loss():
    zeros, t = torch.zeros(3), torch.tensor([1.0, 2.0, 3.0])
    assert hinge_discriminator_loss(zeros, zeros).item() == 2.0
    assert hinge_discriminator_loss(t, t).item() == 3.0  # real term 0, fake term mean(2, 3, 4)


def test_mse_discriminator_loss():
    zeros, ones = torch.zeros(3), torch.ones(3)
    assert mse_discriminator_loss(zeros, zeros).item() == 1.0
    assert mse_discriminator_loss(zeros, ones).item() == 2.0
    assert mse_discriminator_loss(ones, zeros).item() == 0.0


def test_feature_matching_loss():
    t3, t4 = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 10.0, 3.0])
    assert feature_matching_loss([t3], [t3]).item() == 0.0
    assert feature_matching_loss([t3], [t4]).item() == 3.0
    assert feature_matching_loss([t3], [t4], normalize=False).item() == 3.0
    assert feature_matching_loss([t3, t3], [t4, t4]).item() == 3.0
    assert feature_matching_loss([t3, t3], [t4, t4], normalize=False).item() == 6.0


def test_feature_matching_loss_rejects_bad_inputs():
    t3 = torch.tensor([1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        feature_matching_loss([], [])
    with pytest.raises(ValueError):
        feature_matching_loss([t3], [t3, t3])
    with pytest.raises(ValueError):
        feature_matching_loss([t3], [torch.zeros(4)])


def test_multi_discriminator_losses_average_over_sub_discriminators():
    t3, t4 = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 10.0, 3.0])
    adv, feat = generator_adversarial_losses([t3, -t3], [[t3], [t3]], [[t4], [t3]])
    assert adv.item() == 0.0  # (-2 + 2) / 2
    assert feat.item() == 1.5  # (3 + 0) / 2
    loss = discriminator_adversarial_loss([t3, torch.zeros(3)], [t3, torch.zeros(3)])
    assert loss.item() == 2.5  # (3 + 2) / 2


# Reconstruction losses.

@pytest.mark.parametrize("name", ["l1", "l2", "mel", "msspec", "mrstft"])
def test_reconstruction_loss_is_zero_for_identical_inputs(name):
    loss_fn = _reconstruction_losses()[name]
    x = torch.randn(2, 2, random.randrange(3000, 20000))
    loss = loss_fn(x, x)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0
    assert loss.item() == 0.0


@pytest.mark.parametrize("name", ["l1", "l2", "mel", "msspec", "mrstft"])
def test_reconstruction_loss_grows_with_the_error(name):
    loss_fn = _reconstruction_losses()[name]
    torch.manual_seed(0)
    ref = torch.randn(2, 2, 8000)
    noise = torch.randn_like(ref)
    losses = [loss_fn(ref + scale * noise, ref).item() for scale in (0.01, 0.1, 1.0)]
    assert 0 < losses[0] < losses[1] < losses[2], losses


def test_mel_l1_loss_gives_a_gradient():
    ref = torch.randn(1, 1, 4000)
    est = (ref + 0.1 * torch.randn_like(ref)).requires_grad_()
    MultiScaleMelLoss(SAMPLE_RATE)(est, ref).backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0


def test_si_snr_known_value():
    # Zero-mean, orthogonal reference and noise with equal energy: SI-SNR = 10 log10(1 / 0.1^2) = 20 dB.
    ref = torch.tensor([1.0, -1.0, 1.0, -1.0]).repeat(1, 1, 1)
    noise = torch.tensor([1.0, 1.0, -1.0, -1.0]).repeat(1, 1, 1)
    loss = si_snr_loss(ref + 0.1 * noise, ref, sample_rate=1, segment=None)
    assert loss.item() == pytest.approx(-20.0, abs=1e-4)


@pytest.mark.parametrize("segment", [None, 0.25])
def test_si_snr_is_scale_invariant_and_worse_with_noise(segment):
    torch.manual_seed(0)
    ref = torch.randn(2, 2, 10000)
    noise = torch.randn_like(ref)
    est = ref + 0.1 * noise
    loss = si_snr_loss(est, ref, SAMPLE_RATE, segment=segment)
    scaled = si_snr_loss(3.7 * est, ref, SAMPLE_RATE, segment=segment)
    assert scaled.item() == pytest.approx(loss.item(), rel=1e-4)
    assert si_snr_loss(ref + noise, ref, SAMPLE_RATE, segment=segment).item() > loss.item()
    assert loss.item() == pytest.approx(-20.0, abs=0.5)  # noise energy 1 % of the signal's


# Mel spectrogram and filter bank.

def test_mel_filter_bank_is_htk_unnormalised_triangles():
    fb = mel_filter_bank(SAMPLE_RATE, n_fft=1024, n_mels=64, f_min=64.0)
    assert fb.shape == (64, 513)
    assert (fb >= 0).all() and fb.max() <= 1.0
    bin_hz = SAMPLE_RATE / 1024
    assert fb[:, : math.floor(64.0 / bin_hz)].sum() == 0  # nothing below f_min
    # Centres are equally spaced on the HTK scale: filter m peaks near mel_to_hz of its centre.
    mel_max = 2595 * math.log10(1 + SAMPLE_RATE / 2 / 700)
    mel_min = 2595 * math.log10(1 + 64 / 700)
    centre_40 = 700 * (10 ** ((mel_min + 41 * (mel_max - mel_min) / 65) / 2595) - 1)
    assert abs(fb[40].argmax().item() * bin_hz - centre_40) <= bin_hz


@pytest.mark.filterwarnings("ignore:Empty filters")  # 64 bands are too many for n_fft 256; same in both
def test_mel_filter_bank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels, f_min in [(22050, 1024, 64, 64.0), (32000, 256, 64, 64.0), (24000, 2048, 80, 0.0)]:
        expected = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=f_min, htk=True, norm=None)
        ours = mel_filter_bank(sr, n_fft, n_mels, f_min)
        torch.testing.assert_close(ours, torch.from_numpy(expected).float(), atol=1e-5, rtol=0)


def test_mel_spectrogram_matches_librosa():
    librosa = pytest.importorskip("librosa")
    n_fft, hop, N = 512, 128, 3001
    x = torch.randn(1, 1, N)
    ours = MelSpectrogram(SAMPLE_RATE, n_fft, hop, n_mels=40, f_min=64.0)(x)[0]  # [M, T]
    # audiocraft's padding, done by hand: reflect (n_fft - hop) // 2 each side, zeros to fill the last frame.
    padded = torch.nn.functional.pad(x, (192, 192), mode="reflect")[0, 0]
    padded = torch.nn.functional.pad(padded, (0, (math.ceil(N / hop) - 1) * hop + n_fft - padded.shape[-1]))
    expected = librosa.feature.melspectrogram(y=padded.numpy(), sr=SAMPLE_RATE, n_fft=n_fft, hop_length=hop,
                                              center=False, power=2.0, n_mels=40, fmin=64.0, htk=True, norm=None)
    torch.testing.assert_close(ours, torch.from_numpy(expected).float(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n_fft", [64, 256, 1024])
def test_mel_spectrogram_has_ceil_n_over_hop_frames(n_fft):
    N = random.randrange(2000, 5000)
    mel = MelSpectrogram(SAMPLE_RATE, n_fft, n_fft // 4, n_mels=32)(torch.randn(2, 2, N))
    assert mel.shape == (2, 2 * 32, math.ceil(N / (n_fft // 4)))


def test_mel_spectrogram_of_a_sine_peaks_at_its_band():
    freq = 2000.0
    t = torch.arange(8000) / SAMPLE_RATE
    x = torch.sin(2 * math.pi * freq * t)[None, None]
    mel = MelSpectrogram(SAMPLE_RATE, 1024, 256, n_mels=64, f_min=64.0)(x)  # [1, 64, T]
    peak_band = mel.mean(-1)[0].argmax().item()
    fb = mel_filter_bank(SAMPLE_RATE, 1024, 64, 64.0)
    assert peak_band == fb[:, round(freq / (SAMPLE_RATE / 1024))].argmax().item()


def test_normalized_mel_divides_by_window_energy():
    x = torch.randn(1, 2, 3000)
    plain = MelSpectrogram(SAMPLE_RATE, 256, 64, n_mels=16)(x)
    normalized = MelSpectrogram(SAMPLE_RATE, 256, 64, n_mels=16, normalized=True)(x)
    torch.testing.assert_close(normalized, plain / torch.hann_window(256).pow(2).sum())


def test_multi_scale_mel_weights():
    assert MultiScaleMelLoss(SAMPLE_RATE).total == 10  # 5 scales, alpha 1: sum(alpha + 1)
    assert [m.n_fft for m in MultiScaleMelLoss(SAMPLE_RATE).mels] == [64, 128, 256, 512, 1024]
    weighted = MultiScaleMelLoss(SAMPLE_RATE, range_start=5, range_end=7, alphas=True)
    assert weighted.alphas == pytest.approx([31**0.5, 63**0.5])

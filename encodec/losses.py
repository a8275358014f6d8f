"""The losses that train EnCodec (audiocraft's compression solver; EnCodec paper, section 3.4).

Reconstruction: waveform L1 / L2, single-scale log-mel L1, multi-scale mel (`msspec`), multi-resolution
STFT, and SI-SNR (an evaluation metric). Adversarial: hinge and least-squares (mse) losses on the logits of
a multi-scale discriminator, and the feature-matching loss on its feature maps.

Every reconstruction loss takes `(estimate, reference)`, both [B, C, N], and returns a scalar.
Defaults are those of audiocraft's solver config (`config/solver/compression/default.yaml`); where the
loss classes in audiocraft have other defaults, the docstring says so.

Shape legend: B batch, C audio channels, N samples, T frames, M mel bands.
"""

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from encodec.mel import MelSpectrogram

_EPS32 = torch.finfo(torch.float32).eps


def waveform_l1_loss(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean absolute error on samples. Args: [B, C, N] each. Returns: scalar."""
    return F.l1_loss(estimate, reference)


def waveform_l2_loss(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean squared error on samples. Args: [B, C, N] each. Returns: scalar."""
    return F.mse_loss(estimate, reference)


class MelL1Loss(nn.Module):
    """L1 distance between log10 mel spectrograms at one resolution (audiocraft `MelSpectrogramL1Loss`).

    The solver logs it as an info metric (weight 0). Defaults follow the solver config (64 bands from
    64 Hz); the audiocraft class defaults are 80 bands from 0 Hz.

    Args:
        sample_rate: audio sample rate in Hz.
        n_fft, hop_length: STFT size (window = n_fft) and hop.
        n_mels, f_min, f_max: mel filter bank.
        floor_level: floor inside the log10.
    """

    def __init__(self, sample_rate: int, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 64,
                 f_min: float = 64.0, f_max: float | None = None, floor_level: float = 1e-5):
        super().__init__()
        self.mel = MelSpectrogram(sample_rate, n_fft, hop_length, n_mels, f_min, f_max,
                                  log=True, floor_level=floor_level)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Args: estimate, reference [B, C, N]. Returns: scalar."""
        return F.l1_loss(self.mel(estimate), self.mel(reference))  # on [B, C * M, T]


class MultiScaleMelLoss(nn.Module):
    """Multi-scale mel loss (`msspec`): L1 on linear mel + alpha * MSE on log10 mel, at several scales.

    Scale i (range_start <= i < range_end) uses n_fft = window = 2^i and hop = 2^i / 4. With the solver
    config (i = 6..10, alphas off, normalized on) every scale weighs the same and the sum is divided by
    sum_i (alpha_i + 1) = 10. The paper uses i = 5..11. audiocraft's class defaults differ from the config:
    f_min 0, normalized False, alphas True.

    Args:
        sample_rate: audio sample rate in Hz.
        range_start, range_end: exponents of the FFT sizes, end excluded.
        n_mels, f_min, f_max: mel filter bank.
        normalized: window-normalise the STFTs *and* divide the loss by sum(alpha_i + 1) (one flag, as in
            audiocraft).
        alphas: weigh scale i's log term by sqrt(2^i - 1) instead of 1.
        floor_level: floor inside the log10.
    """

    def __init__(self, sample_rate: int, range_start: int = 6, range_end: int = 11, n_mels: int = 64,
                 f_min: float = 64.0, f_max: float | None = None, normalized: bool = True,
                 alphas: bool = False, floor_level: float = 1e-5):
        super().__init__()
        sizes = [2**i for i in range(range_start, range_end)]
        self.mels = nn.ModuleList(
            MelSpectrogram(sample_rate, n, n // 4, n_mels, f_min, f_max, normalized=normalized) for n in sizes
        )
        self.alphas = [(n - 1) ** 0.5 if alphas else 1.0 for n in sizes]
        self.floor_level = floor_level
        self.total = sum(a + 1 for a in self.alphas) if normalized else 1.0

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Args: estimate, reference [B, C, N]. Returns: scalar."""
        loss = estimate.new_zeros(())
        for mel, alpha in zip(self.mels, self.alphas, strict=True):
            mel_est, mel_ref = mel(estimate), mel(reference)  # [B, C * M, T]
            log_est = torch.log10(self.floor_level + mel_est)
            log_ref = torch.log10(self.floor_level + mel_ref)
            loss = loss + F.l1_loss(mel_est, mel_ref) + alpha * F.mse_loss(log_est, log_ref)
        return loss / self.total


def stft_magnitude(x: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor) -> torch.Tensor:
    """|STFT| of a centred STFT (`torch.stft` defaults: reflect padding), floored for a safe sqrt/log.

    Args:
        x: [B, C, N] audio.
        n_fft, hop_length: STFT size and hop; window: [win_length], zero-padded to n_fft by torch.stft.
    Returns:
        [B, C, F, T] magnitudes >= sqrt(1e-7).
    """
    B, C, N = x.shape
    spec = torch.stft(x.reshape(B * C, N), n_fft, hop_length, window.shape[0], window,
                      return_complex=True)  # [B * C, F, T]
    power = spec.real.pow(2) + spec.imag.pow(2)
    return power.clamp(min=1e-7).sqrt().reshape(B, C, *spec.shape[-2:])  # clamp avoids sqrt'(0) = inf


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over STFT resolutions (audiocraft `MRSTFTLoss`).

    Per resolution: sc = ||Y - X||_F / (||Y||_F + eps) over the whole batch and
    mag = mean |log(eps + Y) - log(eps + X)|, with X, Y the magnitudes of estimate and reference.
    Returns factor_sc * mean(sc) + factor_mag * mean(mag). Factors 0.5 are the solver config's (the class
    default is 0.1). audiocraft returns a shape-[1] tensor; this returns a scalar.

    Args:
        n_ffts, hop_lengths, win_lengths: one entry per resolution (periodic Hann windows).
        factor_sc, factor_mag: weights of the two terms.
        epsilon: stabiliser of the ratio and the log.
    """

    def __init__(self, n_ffts: Sequence[int] = (1024, 2048, 512), hop_lengths: Sequence[int] = (120, 240, 50),
                 win_lengths: Sequence[int] = (600, 1200, 240), factor_sc: float = 0.5,
                 factor_mag: float = 0.5, epsilon: float = _EPS32):
        super().__init__()
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError("n_ffts, hop_lengths and win_lengths must have the same length")
        self.n_ffts, self.hop_lengths = list(n_ffts), list(hop_lengths)
        for i, win in enumerate(win_lengths):
            self.register_buffer(f"window_{i}", torch.hann_window(win), persistent=False)
        self.factor_sc, self.factor_mag, self.epsilon = factor_sc, factor_mag, epsilon

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Args: estimate, reference [B, C, N]. Returns: scalar."""
        sc, mag = estimate.new_zeros(()), estimate.new_zeros(())
        for i, (n_fft, hop) in enumerate(zip(self.n_ffts, self.hop_lengths, strict=True)):
            window = getattr(self, f"window_{i}")
            x = stft_magnitude(estimate, n_fft, hop, window)  # [B, C, F, T]
            y = stft_magnitude(reference, n_fft, hop, window)
            sc = sc + torch.linalg.norm(y - x) / (torch.linalg.norm(y) + self.epsilon)
            mag = mag + F.l1_loss(torch.log(self.epsilon + y), torch.log(self.epsilon + x))
        n = len(self.n_ffts)
        return self.factor_sc * sc / n + self.factor_mag * mag / n


def si_snr_loss(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int,
                segment: float | None = 5.0, overlap: float = 0.5, epsilon: float = _EPS32) -> torch.Tensor:
    """Negative scale-invariant SNR in dB (a loss: lower is better), audiocraft `SISNR`.

    Both signals are cut into frames of `segment` seconds with `overlap` (the tail zero-padded so that
    ceil(N / stride) frames cover it), or taken whole when segment is None. In each frame, after removing
    the mean, the estimate is split into its projection on the reference and the rest ("noise"):
        si_snr = 10 log10(||proj||^2 / ||noise||^2), proj = <ref, est> ref / ||ref||^2,
    with eps * frame_length added to each energy. The result is -mean over B, C and frames. Scaling the
    estimate leaves it unchanged. Solver config: segment 5 s (the class default is 20 s).

    Args:
        estimate, reference: [B, C, N].
        sample_rate: Hz, converts segment to samples.
        segment: frame length in seconds, or None for the whole signal.
        overlap: fraction of a frame shared with the next one.
        epsilon: stabiliser, scaled by the frame length.
    Returns:
        scalar, -SI-SNR in dB.
    """
    N = reference.shape[-1]
    if segment is None:
        frame = stride = N
    else:
        frame = int(segment * sample_rate)
        stride = int(frame * (1 - overlap))
    n_frames = -(-N // stride)  # ceil
    pad = (n_frames - 1) * stride + frame - N
    eps = epsilon * frame
    ref = F.pad(reference, (0, pad)).unfold(-1, frame, stride)  # [B, C, n_frames, frame]
    est = F.pad(estimate, (0, pad)).unfold(-1, frame, stride)
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    dot = (ref * est).sum(-1, keepdim=True)  # [B, C, n_frames, 1]
    proj = dot * ref / (eps + ref.pow(2).sum(-1, keepdim=True))
    noise = est - proj
    si_snr = 10 * (torch.log10(eps + proj.pow(2).sum(-1)) - torch.log10(eps + noise.pow(2).sum(-1)))
    return -si_snr.mean()


# Adversarial losses. `logits` is one sub-discriminator's output, any shape.

def hinge_generator_loss(logits: torch.Tensor) -> torch.Tensor:
    """-mean(D(fake)), unclipped (audiocraft `hinge`); 0 for an empty tensor."""
    if logits.numel() == 0:
        return logits.new_zeros(())
    return -logits.mean()


def mse_generator_loss(logits: torch.Tensor) -> torch.Tensor:
    """mean((D(fake) - 1)^2), least-squares GAN; 0 for an empty tensor."""
    if logits.numel() == 0:
        return logits.new_zeros(())
    return F.mse_loss(logits, torch.ones_like(logits))


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))."""
    return F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()


def mse_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """mean((D(real) - 1)^2) + mean(D(fake)^2), least-squares GAN."""
    return F.mse_loss(logits_real, torch.ones_like(logits_real)) + logits_fake.pow(2).mean()


def feature_matching_loss(fmaps_fake: Sequence[torch.Tensor], fmaps_real: Sequence[torch.Tensor],
                          normalize: bool = True) -> torch.Tensor:
    """Sum (or mean, when normalize) over layers of L1(fake_l, real_l), one sub-discriminator's layers.

    The paper also divides each layer by mean(|real_l|); audiocraft computes that scale but does not use
    it, nor do we. Real features are not detached (the discriminator is frozen during this step).

    Args:
        fmaps_fake, fmaps_real: equal-length lists of same-shape feature maps.
        normalize: divide by the number of layers.
    Returns:
        scalar.
    """
    if len(fmaps_fake) != len(fmaps_real) or len(fmaps_fake) == 0:
        raise ValueError(f"need two equal, non-empty lists of feature maps, got {len(fmaps_fake)} "
                         f"and {len(fmaps_real)}")
    loss = fmaps_fake[0].new_zeros(())
    for fake, real in zip(fmaps_fake, fmaps_real, strict=True):
        if fake.shape != real.shape:
            raise ValueError(f"feature map shapes differ: {tuple(fake.shape)} vs {tuple(real.shape)}")
        loss = loss + F.l1_loss(fake, real)
    return loss / len(fmaps_fake) if normalize else loss


def generator_adversarial_losses(
    logits_fake: Sequence[torch.Tensor], fmaps_fake: Sequence[Sequence[torch.Tensor]],
    fmaps_real: Sequence[Sequence[torch.Tensor]],
    criterion: Callable[[torch.Tensor], torch.Tensor] = hinge_generator_loss,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generator side of the GAN: (adversarial loss, feature-matching loss), each a mean over the K
    sub-discriminators (audiocraft `AdversarialLoss.forward` with normalize=True).

    Args:
        logits_fake: K logits of the discriminator on the generated audio.
        fmaps_fake, fmaps_real: K lists of feature maps on generated and real audio.
        criterion: per-sub-discriminator generator loss, e.g. `hinge_generator_loss`.
    Returns:
        (adv, feat) scalars.
    """
    zero = logits_fake[0].new_zeros(())
    adv = sum((criterion(logits) for logits in logits_fake), zero)
    feat = sum((feature_matching_loss(f, r) for f, r in zip(fmaps_fake, fmaps_real, strict=True)), zero)
    return adv / len(logits_fake), feat / len(logits_fake)


def discriminator_adversarial_loss(
    logits_real: Sequence[torch.Tensor], logits_fake: Sequence[torch.Tensor],
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = hinge_discriminator_loss,
) -> torch.Tensor:
    """Discriminator loss, mean over the K sub-discriminators (audiocraft `AdversarialLoss.train_adv`).

    Args:
        logits_real, logits_fake: K logits each; compute the fake ones on the detached generator output.
        criterion: e.g. `hinge_discriminator_loss(real, fake)`.
    Returns:
        scalar.
    """
    pairs = list(zip(logits_real, logits_fake, strict=True))
    return sum((criterion(real, fake) for real, fake in pairs), logits_real[0].new_zeros(())) / len(pairs)

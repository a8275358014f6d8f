"""A look-ahead true-peak limiter: lowers the gain around the few peaks that would pass a ceiling, smoothly.

Loudness normalisation to -14 LUFS needs a peak-to-loudness ratio of at most 13 dB under a -1 dBFS ceiling;
most music, and most generated clips, have a few peaks above that. A plain gain would then either clip them
or stay quieter than the target. The limiter turns the gain down only around those peaks:

    need[n]   the gain (dB, <= 0) that keeps sample n's true peak (4x oversampled, BS.1770) under the ceiling
    release   g[n] = min over k <= n of need[k] + rate * (n - k): after a peak the gain recovers at `rate` dB/s
    attack    min over the next L samples (look-ahead), then the mean over the last L: the gain glides down
              during the L samples before a peak instead of jumping, and never exceeds need[n] at any n

        need  ────────╮  ╭─────────          gain  ──────╮          ╭───
                      ╰──╯                                ╲        ╱  release
                                                    attack ╲______╱
"""

import math

import torch
import torch.nn.functional as F

from audio.clip import resample

LOOKAHEAD_S = 0.005  # attack time: the gain reaches its reduced value over the 5 ms before a peak
RELEASE_DB_PER_S = 60.0  # after a peak the gain recovers at 60 dB/s (a 3 dB dip lasts ~50 ms)


def limit_true_peak(wav: torch.Tensor, sample_rate: int, ceiling_db: float) -> tuple[torch.Tensor, float, float]:
    """Limit a clip [C, N] so that its true peak stays at or under `ceiling_db` dBFS.

    Returns:
        (the limited clip [C, N], the largest gain reduction applied in dB (>= 0; 0 when nothing was done),
        the clip's true peak in dBFS). All channels get the same gain (the stereo image does not move).
    """
    wav = wav.float()
    envelope = peak_envelope(wav)  # [N]
    peak_db = to_db(envelope.max())
    if peak_db <= ceiling_db:
        return wav, 0.0, peak_db
    gain = limiter_gain(envelope, sample_rate, ceiling_db)  # [N] dB
    limited = wav * (10 ** (gain / 20)).float()  # [C, N]
    # Gain changes move the inter-sample peaks a little (a few hundredths of a dB): a second pass, which
    # only touches those peaks' neighbourhoods, takes them back under the ceiling; a last trim catches the rest.
    envelope = peak_envelope(limited)  # [N]
    if to_db(envelope.max()) > ceiling_db:
        second = limiter_gain(envelope, sample_rate, ceiling_db)  # [N] dB
        limited, gain = limited * (10 ** (second / 20)).float(), gain + second
        envelope = peak_envelope(limited)  # [N]
    over = max(0.0, to_db(envelope.max()) - ceiling_db)
    if over:
        limited = limited * 10 ** (-over / 20)
    return limited, -gain.min().item() + over, min(to_db(envelope.max()), ceiling_db)


def peak_envelope(wav: torch.Tensor) -> torch.Tensor:
    """[N]: the true peak (4x oversampled, loudest channel) of a clip [C, N] around each sample, linear."""
    n = wav.shape[-1]
    if n < 8:  # too short for the interpolation filter to mean anything
        return wav.abs().amax(dim=0)
    oversampled = resample(wav, 1, 4).abs().amax(dim=0)  # [4N]
    envelope = oversampled[: 4 * n].reshape(n, 4).amax(dim=-1)  # [N]: the peak in [n, n + 1)
    envelope = torch.maximum(envelope, F.pad(envelope[:-1], (1, 0)))  # [N]: ... and in [n - 1, n)
    return torch.maximum(envelope, wav.abs().amax(dim=0))  # [N]


def limiter_gain(envelope: torch.Tensor, sample_rate: int, ceiling_db: float) -> torch.Tensor:
    """The limiter's gain curve [N] (dB, <= 0, float64) for a peak envelope [N]: need, release, attack as above."""
    n = envelope.shape[-1]
    need = (ceiling_db - 20 * torch.log10(envelope.double().clamp(min=1e-12))).clamp(max=0.0)  # [N] dB

    # release: the gain may rise by at most `rate` dB per sample (a running minimum of cones; the k = n cone is
    # need[n] itself, taken exactly)
    slope = RELEASE_DB_PER_S / sample_rate * torch.arange(n, dtype=need.dtype)  # [N]
    gain = torch.minimum(torch.cummin(need - slope, dim=0).values + slope, need)  # [N]

    # attack: a look-ahead minimum over L + 1 samples, then a moving average over the last L + 1
    look = max(1, round(LOOKAHEAD_S * sample_rate))
    ahead = sliding_min(F.pad(gain, (0, look)), look + 1)[:n]  # [N]: min of gain[n : n + L + 1]
    sums = F.pad(torch.cat([ahead[:1].expand(look), ahead]).cumsum(0), (1, 0))  # [N + L + 1]
    return (sums[look + 1:] - sums[:-look - 1]) / (look + 1)  # [N]: mean of ahead[n - L : n + 1]


def sliding_min(x: torch.Tensor, width: int) -> torch.Tensor:
    """out[n] = min(x[n : n + width]) for a 1-D x, in O(N) (van Herk / Gil-Werman: per-block running minima
    from the left and from the right; a window spans the end of one block and the start of the next)."""
    n = x.shape[0]
    blocks = F.pad(x, (0, (-n) % width + width), value=math.inf).view(-1, width)  # [N / width + 1, width]
    from_left = blocks.cummin(dim=1).values.flatten()  # min from the block's start to i
    from_right = blocks.flip(1).cummin(dim=1).values.flip(1).flatten()  # min from i to the block's end
    return torch.minimum(from_right[:n], from_left[width - 1:width - 1 + n])


def to_db(amplitude: torch.Tensor) -> float:
    return 20 * math.log10(amplitude.item()) if amplitude > 0 else -math.inf

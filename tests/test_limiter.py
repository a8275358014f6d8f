"""audio/limiter.py: the look-ahead true-peak limiter touches only the neighbourhood of the peaks."""

import math

import torch

from audio.clip import to_db, true_peak
from audio.limiter import LOOKAHEAD_S, RELEASE_DB_PER_S, limit_true_peak

RATE = 32000


def test_only_the_peak_and_its_neighbourhood_are_turned_down():
    t = torch.arange(3 * RATE) / RATE
    wav = 0.3 * torch.sin(2 * math.pi * 330 * t)[None].repeat(2, 1)  # [2, N] a stereo tone at -10.5 dBFS
    burst = slice(int(1.5 * RATE), int(1.5 * RATE) + 64)
    wav[:, burst] *= 3  # 2 ms at -1 dBFS: 6 dB over a -7 dBFS ceiling
    wav[1] *= 0.5  # the right channel quieter: both channels still get the same gain
    limited, reduction, peak = limit_true_peak(wav, RATE, ceiling_db=-7.0)
    assert to_db(true_peak(limited)) <= -7.0 + 1e-3
    assert abs(peak - to_db(true_peak(limited))) < 1e-3
    assert 5.5 < reduction < 7.0
    gain = limited / wav  # [2, N]
    audible = wav.abs().amin(dim=0) > 1e-2  # [N]: where the ratio is well defined
    assert torch.allclose(gain[0, audible], gain[1, audible], atol=1e-4)
    look = round(LOOKAHEAD_S * RATE)
    untouched_before = burst.start - look - 4  # the attack starts one look-ahead before the peak
    untouched_after = burst.stop + look + math.ceil(reduction / RELEASE_DB_PER_S * RATE)  # ... and ends after release
    assert torch.equal(limited[:, :untouched_before], wav[:, :untouched_before])
    assert torch.equal(limited[:, untouched_after:], wav[:, untouched_after:])
    around = torch.arange(untouched_before - 10, untouched_after + 10)
    around = around[audible[around]]
    steps = to_db_tensor(gain[0, around]).diff().abs() / around.diff()  # dB per sample
    assert steps.max() < 1.1 * reduction / look  # a glide over the look-ahead, not a jump


def test_a_clip_under_the_ceiling_is_left_as_it_is():
    wav = 0.1 * torch.randn(1, RATE)
    limited, reduction, _ = limit_true_peak(wav, RATE, ceiling_db=-1.0)
    assert reduction == 0 and torch.equal(limited, wav)


def to_db_tensor(gain: torch.Tensor) -> torch.Tensor:
    return 20 * torch.log10(gain.abs())


def test_sliding_min_matches_the_definition():
    from audio.limiter import sliding_min

    x = torch.randn(1000, dtype=torch.float64)
    for width in (1, 7, 161):
        want = torch.stack([x[i:i + width].min() for i in range(1000)])
        assert torch.equal(sliding_min(x, width), want)

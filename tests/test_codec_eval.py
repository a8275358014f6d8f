"""training/demo/codec_eval.py: the measures the demo model's card and bench/denoise.py report."""

import math

import torch

from training.demo import codec_eval as bench

RATE = 32_000


def test_high_band_flatness_of_white_noise_and_of_a_tone():
    torch.manual_seed(0)
    # a periodogram bin of white noise is exponential: E[log P] = log E[P] - Euler's gamma, so flatness = e^-0.5772
    assert abs(bench.flatness(torch.randn(1, 2 * RATE), RATE) - math.exp(-0.5772)) < 0.02
    t = torch.arange(2 * RATE) / RATE
    assert bench.flatness(torch.sin(2 * math.pi * 6000 * t)[None], RATE) < 0.01  # one partial in the band
    assert bench.flatness(torch.zeros(1, RATE), RATE) == 0.0


def test_align_undoes_a_delay_either_way_and_keeps_the_length():
    torch.manual_seed(0)
    reference = torch.randn(1, 4000)
    for delay in (3, -5, 0):
        late = torch.roll(reference, delay)  # late[n] = reference[n - delay]
        aligned = bench.align(late, reference, max_lag=20)
        assert aligned.shape == reference.shape
        assert torch.equal(aligned[:, 20:-20], reference[:, 20:-20])
    longer = torch.nn.functional.pad(reference, (2, 50))  # 2 samples late and 50 too long, as opusdec can give
    assert torch.equal(bench.align(longer, reference, max_lag=20), reference)


def test_metrics_of_a_clip_against_itself():
    torch.manual_seed(0)
    wav = 0.3 * torch.randn(1, RATE)
    m = bench.CodecMetrics(RATE)(wav, wav)
    assert m["mel"] == 0 and m["high_band_mel"] == 0 and m["si_snr"] > 40
    assert bench.CodecMetrics(RATE).high.sum() > 0  # some of the 64 mel bands lie above 4 kHz

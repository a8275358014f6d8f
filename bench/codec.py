"""Codec speed: our EnCodec against transformers' on the same weights, in one run.

    python bench/codec.py [--seconds 10] [--repeats 5] [--model 32khz|24khz] [--baseline REV]

Builds transformers' EncodecModel at the full published size (random weights, codebooks filled), loads the
same weights into ours with `load_encodec`, checks that both give the same codes, then times encode and
decode of the same audio, the variants in turn, round after round (after a warm-up round). With `--baseline
REV`, the `load_encodec` of another commit of this repository (bench/baseline.py) loads the same weights and
runs beside them. Prints the median seconds and the speed ratio (transformers / variant: > 1 means faster
than transformers). Absolute times depend on the machine and its load; compare ratios.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baseline import import_from_commit  # noqa: E402

from encodec import load_encodec  # noqa: E402
from tests.codec_oracle import random_hf_codec  # noqa: E402

CONFIGS = {
    "32khz": dict(sampling_rate=32_000, audio_channels=1, num_filters=64, upsampling_ratios=[8, 5, 4, 4],
                  target_bandwidths=[2.2], codebook_size=2048, hidden_size=128, use_causal_conv=False,
                  use_conv_shortcut=False),
    "24khz": dict(sampling_rate=24_000, audio_channels=1, num_filters=32, upsampling_ratios=[8, 5, 4, 2],
                  target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0], codebook_size=1024, hidden_size=128,
                  use_causal_conv=True, use_conv_shortcut=True),
}


def time_alternating(variants: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each zero-argument function, run in turn round after round (one warm-up round)."""
    times = {name: [] for name in variants}
    for round_ in range(repeats + 1):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            if round_ > 0:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(samples) for name, samples in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", choices=sorted(CONFIGS), default="32khz")
    parser.add_argument("--baseline", metavar="REV", help="also time this commit's codec (e.g. 95037c9)")
    args = parser.parse_args()
    print(f"settings: {vars(args)}, torch {torch.__version__}, threads {torch.get_num_threads()}")

    config = CONFIGS[args.model]
    oracle = random_hf_codec(0, **config)
    with tempfile.TemporaryDirectory() as folder:
        oracle.save_pretrained(folder)
        codecs = {"ours": load_encodec(folder)}
        if args.baseline:
            old = import_from_commit(args.baseline, ["encodec"])["encodec"]
            codecs[f"{args.baseline[:7]} ours"] = old.load_encodec(folder)
    ours = codecs["ours"]
    bandwidth = max(config["target_bandwidths"])
    wav = torch.randn(1, 1, int(args.seconds * config["sampling_rate"])) * 0.3

    with torch.inference_mode():
        hf_codes = oracle.encode(wav, bandwidth=bandwidth).audio_codes
        codes = ours.encode(wav)
        assert torch.equal(codes, hf_codes[0]), "codes differ: the comparison would be meaningless"
        hf_audio = oracle.decode(hf_codes, [None]).audio_values
        max_diff = (ours.decode(codes) - hf_audio).abs().max().item()
        for name, codec in codecs.items():
            assert torch.equal(codec.encode(wav), codes), f"{name}: codes differ"
        variants = {"encode": {"transformers": lambda: oracle.encode(wav, bandwidth=bandwidth)},
                    "decode": {"transformers": lambda: oracle.decode(hf_codes, [None])}}
        for name, codec in codecs.items():
            variants["encode"][name] = lambda codec=codec: codec.encode(wav)
            variants["decode"][name] = lambda codec=codec: codec.decode(codes)
        results = {step: time_alternating(fns, args.repeats) for step, fns in variants.items()}
    print(f"codes equal: True, decoded audio max |diff|: {max_diff:.2e}")
    print(f"{'':8}{'variant':>16}{'median s':>10}{'speed-up':>10}")
    for step, medians in results.items():
        for name, seconds in medians.items():
            print(f"{step:8}{name:>16}{seconds:10.3f}{medians['transformers'] / seconds:9.2f}x")


if __name__ == "__main__":
    main()

"""Codec speed: our EnCodec against transformers' on the same weights, in one run.

    python bench/codec.py [--seconds 10] [--repeats 5] [--model 32khz|24khz]

Builds transformers' EncodecModel at the full published size (random weights, codebooks filled), loads the
same weights into ours with `load_encodec`, checks that both give the same codes, then times encode and
decode of the same audio. Prints the best-of-N seconds and the speed ratio (transformers / ours: > 1 means
we are faster). Absolute times depend on the machine; compare ratios.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", choices=sorted(CONFIGS), default="32khz")
    args = parser.parse_args()
    print(f"settings: {vars(args)}, torch {torch.__version__}, threads {torch.get_num_threads()}")

    config = CONFIGS[args.model]
    oracle = random_hf_codec(0, **config)
    with tempfile.TemporaryDirectory() as folder:
        oracle.save_pretrained(folder)
        ours = load_encodec(folder)
    bandwidth = max(config["target_bandwidths"])
    wav = torch.randn(1, 1, int(args.seconds * config["sampling_rate"])) * 0.3

    with torch.inference_mode():
        hf_codes = oracle.encode(wav, bandwidth=bandwidth).audio_codes
        codes = ours.encode(wav)
        assert torch.equal(codes, hf_codes[0]), "codes differ: the comparison would be meaningless"
        hf_audio = oracle.decode(hf_codes, [None]).audio_values
        max_diff = (ours.decode(codes) - hf_audio).abs().max().item()
        results = {
            "encode": (best_time(lambda: oracle.encode(wav, bandwidth=bandwidth), args.repeats),
                       best_time(lambda: ours.encode(wav), args.repeats)),
            "decode": (best_time(lambda: oracle.decode(hf_codes, [None]), args.repeats),
                       best_time(lambda: ours.decode(codes), args.repeats)),
        }
    print(f"codes equal: True, decoded audio max |diff|: {max_diff:.2e}")
    print(f"{'':8}{'transformers (s)':>18}{'ours (s)':>12}{'speed-up':>10}")
    for name, (theirs, mine) in results.items():
        print(f"{name:8}{theirs:18.3f}{mine:12.3f}{theirs / mine:9.2f}x")


if __name__ == "__main__":
    main()

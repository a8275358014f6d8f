"""Streaming: time to first audio and total time of `generate_stream` against `generate()`, in one process.

    python bench/streaming.py [--seconds 10] [--rounds 3] [--chunk 1.0] [--models demo,small-int8] [--threads N]

Models:
- `demo`: the bundled demo model (checkpoints/demo), as `generate.py --model demo` loads it on a CPU;
- `small-int8`: the musicgen-small LM shape (dim 1024, 24 layers, 16 heads, 4 x 2048 codebooks) with random
  weights and the published 32 kHz codec's shape (64 filters, 2 LSTM layers, random weights), int8 weights;
  T5 is tiny (one layer), as in bench/generation.py.

Each round runs both calls, alternating which goes first (a shared machine's load drifts), with the same
prompt, seed and settings (CFG 3, top-k 250): `generate()`, then the stream, timing its first chunk (time to
first audio, from the call, model loaded) and its last. The ratio is the median over rounds of stream / generate
within a round. The chunks put end to end are checked against generate()'s audio (max |difference|).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import threads  # noqa: E402, I001  (before torch: OpenMP's wait policy)
import torch  # noqa: E402
import transformers  # noqa: E402

from bench.generation import random_musicgen  # noqa: E402
from inference import MusicGen  # noqa: E402
from tests.musicgen_oracle import word_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Lo-fi funk"


def small_int8(folder: Path) -> MusicGen:
    """musicgen-small's LM shape and the published codec's shape, random weights, int8 weights."""
    model = random_musicgen("small")
    codec = transformers.EncodecConfig(  # facebook/encodec_32khz's shape
        sampling_rate=32_000, num_filters=64, upsampling_ratios=[8, 5, 4, 4], hidden_size=128, codebook_size=2048,
        target_bandwidths=[2.2], use_causal_conv=False, use_conv_shortcut=False, num_lstm_layers=2)
    model.audio_encoder = transformers.EncodecModel(codec).eval()
    model.config.audio_encoder = codec
    model.save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return MusicGen.from_pretrained(folder, device="cpu", quantize="int8")


def one_round(mg: MusicGen, args: argparse.Namespace, stream_first: bool) -> dict[str, float]:
    def generate() -> tuple[float, torch.Tensor]:
        start = time.perf_counter()
        audio = mg.generate(PROMPT, duration=args.seconds, seed=0)
        return time.perf_counter() - start, audio

    def stream() -> tuple[float, float, torch.Tensor]:
        start, first, chunks = time.perf_counter(), None, []
        for chunk in mg.generate_stream(PROMPT, duration=args.seconds, seed=0, chunk_seconds=args.chunk):
            first = first or time.perf_counter() - start
            chunks.append(chunk)
        return first, time.perf_counter() - start, torch.cat(chunks, dim=-1)

    if stream_first:
        first, total, streamed = stream()
        whole_time, whole = generate()
    else:
        whole_time, whole = generate()
        first, total, streamed = stream()
    return dict(first=first, stream=total, generate=whole_time, diff=(streamed - whole).abs().max().item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=float, default=1.0, help="chunk_seconds of the stream")
    parser.add_argument("--models", default="demo,small-int8")
    parser.add_argument("--threads", type=int, help="CPU threads (default: generate.py's policy, the free cores)")
    args = parser.parse_args()
    policy = threads.apply_threads(args.threads)
    print(f"torch {torch.__version__}, threads {policy}; {args.seconds:g} s of audio, chunks of {args.chunk:g} s, "
          f"{args.rounds} rounds")
    print(f"{'model':<12} {'first audio s':>14} {'stream s':>9} {'generate s':>11} {'stream/generate':>16} "
          f"{'max |diff|':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            mg = MusicGen.from_pretrained(ROOT / "checkpoints" / "demo", device="cpu") if name == "demo" \
                else small_int8(Path(tmp) / name)
            mg.generate(PROMPT, duration=0.5, seed=0)  # warm-up
            rounds = [one_round(mg, args, stream_first=r % 2 == 1) for r in range(args.rounds)]
            median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
            ratio = statistics.median(r["stream"] / r["generate"] for r in rounds)
            print(f"{name:<12} {median['first']:>14.2f} {median['stream']:>9.2f} {median['generate']:>11.2f} "
                  f"{ratio:>15.2f}x {max(r['diff'] for r in rounds):>11.1e}")


if __name__ == "__main__":
    main()

"""Chunked codec decode (and encode): how close to a whole decode, and how much memory.

    python bench/chunked_decode.py tolerance [--seconds 60] [--chunk 500] [--contexts 0 5 10 25 50 100]
    python bench/chunked_decode.py memory [--seconds 60 300] [--chunk 1500] [--context 400] [--whole] [--encode]

`tolerance` decodes the same random codes whole and in chunks (inference/chunked.py) with several context
lengths, on the bundled demo codec and on a random codec of the published 32 kHz size, and prints max |diff|
(the audio is in [-1, 1]; a 16-bit file's step is 3e-5). `memory` decodes random codes of each length in a
fresh subprocess, whole or chunked, and prints its peak RSS (VmHWM): chunked, it depends on the chunk only.
`memory --encode` does the same for encoding random audio (an audio prompt's encode, inference/audio_prompt.py).
"""

import argparse
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from encodec import EncodecModel, get_preset  # noqa: E402
from inference.chunked import CHUNK_FRAMES, CONTEXT_FRAMES, decode_in_chunks, encode_in_chunks  # noqa: E402, F401
from inference.loading import load_musicgen_parts  # noqa: E402


def published_size_codec(seed: int = 0) -> EncodecModel:
    """MusicGen's 32 kHz codec shape with random weights (codebooks filled: zeros would decode to silence)."""
    torch.manual_seed(seed)
    codec = EncodecModel(get_preset("encodec-32khz"))
    for layer in codec.quantizer.layers:
        layer.codebook.embed.normal_()
    return codec.fold_weight_norm().eval()


def demo_codec() -> EncodecModel:
    return load_musicgen_parts(ROOT / "checkpoints" / "demo", torch.device("cpu"), torch.float32).codec


def random_codes(codec: EncodecModel, seconds: float, seed: int = 0) -> torch.Tensor:
    frames = round(seconds * codec.frame_rate)
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(codec.cardinality, (1, codec.num_codebooks, frames), generator=generator)  # [1, K, T]


def tolerance(args: argparse.Namespace) -> None:
    print(f"max |chunked - whole| over {args.seconds:g} s of random codes, chunks of {args.chunk} frames")
    print(f"{'context frames':<40}" + "".join(f"{c:>10}" for c in args.contexts))
    codecs = {"demo codec (trained)": demo_codec(), "random 32 kHz, published size": published_size_codec()}
    for name, codec in codecs.items():
        codes = random_codes(codec, args.seconds)
        whole = codec.decode(codes)
        diffs = [(decode_in_chunks(codec, codes, args.chunk, c) - whole).abs().max().item() for c in args.contexts]
        loudest = whole.abs().max()
        print(f"{name:<40}" + "".join(f"{d:>10.1e}" for d in diffs) + f"   (whole: max |audio| {loudest:.2f})")


def peak_rss(seconds: float, whole: bool, chunk: int, context: int, encode: bool = False) -> float:
    """Peak RSS in GB of a fresh process that decodes `seconds` of random codes (or, `encode`, encodes `seconds`
    of random audio) on the published-size codec."""
    decode = "codec.decode(codes)" if whole else f"decode_in_chunks(codec, codes, {chunk}, {context})"
    if encode:
        decode = "codec.encode(wav)" if whole else f"encode_in_chunks(codec, wav, {chunk}, {context})"
    script = (f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); sys.path.insert(0, {str(ROOT)!r})\n"
              "from chunked_decode import *\n"
              "torch.set_grad_enabled(False)\n"
              f"codec = published_size_codec(); codes = random_codes(codec, {seconds})\n"
              f"wav = 0.1 * torch.randn(1, 1, round({seconds} * codec.sample_rate))\n"
              f"out = {decode}\n"
              "print([line for line in open('/proc/self/status') if line.startswith('VmHWM')][0].split()[1])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1]) / 1e6  # kB -> GB


def memory(args: argparse.Namespace) -> None:
    what = "encoding random audio" if args.encode else "decoding random codes"
    print(f"peak RSS {what} on the published-size 32 kHz codec (chunk {args.chunk}, context {args.context} frames)")
    for seconds in args.seconds:
        rows = [("chunked", False)] + ([("whole", True)] if args.whole else [])
        for name, whole in rows:
            gb = peak_rss(seconds, whole, args.chunk, args.context, args.encode)
            print(f"  {seconds:>6g} s {name:<8} {gb:.2f} GB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    tol = sub.add_parser("tolerance")
    tol.add_argument("--seconds", type=float, default=60.0)
    tol.add_argument("--chunk", type=int, default=500)
    tol.add_argument("--contexts", type=int, nargs="+", default=[0, 5, 10, 25, 50, 100])
    mem = sub.add_parser("memory")
    mem.add_argument("--seconds", type=float, nargs="+", default=[60.0, 300.0])
    mem.add_argument("--chunk", type=int, default=CHUNK_FRAMES)
    mem.add_argument("--context", type=int, default=CONTEXT_FRAMES)
    mem.add_argument("--whole", action="store_true", help="also decode whole (memory grows with the piece)")
    mem.add_argument("--encode", action="store_true", help="encode random audio instead of decoding codes")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    tolerance(args) if args.what == "tolerance" else memory(args)


if __name__ == "__main__":
    main()

"""Attention of one decoding step: one new query over the cached keys, three ways, side by side.

    python bench/attention.py [--threads 1] [--repeats 200] [--keys 12,100,500,1500]

The shapes of a musicgen-small step with CFG: q [2, 16, 1, 64], keys and values [2, 16, S_k, 64] (12 for the
cross-attention over the text, up to 1503 for the self-attention at the end of a 30 s window), in bfloat16
(the KV cache of int8 and bfloat16 decoding) and float32. Candidates:

- `F.scaled_dot_product_attention` as lm/transformer.py calls it (on CPU: the flash kernel);
- the same under `sdpa_kernel(SDPBackend.MATH)`, torch's reference composition;
- written for one query: q k^T (a batched matrix-vector product), a float32 softmax, a product with the values.

Prints the median microseconds of each and its largest error against a float32 reference.
"""

import argparse
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def one_query(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh)) v for q [B, H, 1, Dh] over k, v [B, H, S_k, Dh]; the softmax in float32."""
    scores = (q @ k.transpose(-1, -2)) * (1 / math.sqrt(q.shape[-1]))  # [B, H, 1, S_k]
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v  # [B, H, 1, Dh]


def math_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v)


CANDIDATES = {"sdpa (flash on CPU)": F.scaled_dot_product_attention, "sdpa math backend": math_backend,
              "one-query matmul/softmax/matmul": one_query}


def median_us(fn, *args, repeats: int) -> float:
    for _ in range(5):
        fn(*args)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--keys", type=lambda s: [int(x) for x in s.split(",")], default=[12, 100, 500, 1500])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"settings: {vars(args)}; torch {torch.__version__}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, AMX {torch.cpu._is_amx_tile_supported()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'dtype':10}{'keys':>6}" + "".join(f"{name:>34}" for name in CANDIDATES))
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.bfloat16, torch.float32):
        for keys in args.keys:
            q, k, v = (torch.randn(2, 16, n, 64, generator=generator) for n in (1, keys, keys))
            reference = F.scaled_dot_product_attention(q, k, v)
            q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
            cells = []
            for fn in CANDIDATES.values():
                error = (fn(q, k, v).float() - reference).abs().max().item()
                cells.append(f"{median_us(fn, q, k, v, repeats=args.repeats):9.0f} us (err {error:.4f})")
            print(f"{str(dtype).removeprefix('torch.'):10}{keys:6}" + "".join(f"{c:>34}" for c in cells))


if __name__ == "__main__":
    main()

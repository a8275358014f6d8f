"""Candidate kernels for a decoding step's linear layers, side by side: float32, bfloat16, int8, int4.

    python bench/int8_kernels.py [--rows 2] [--threads 1] [--repeats 30] [--layers 1]

One musicgen-small layer's six matrices (q, k, v, out: 1024 x 1024; FFN 4096 x 1024 and 1024 x 4096), random
weights, `--rows` activation rows (2 = one prompt with CFG), one thread. Prints the median time of the six
products, the bytes of weights they read per second, and the relative error of the result against float32.
`--layers 24` takes 24 such layers of their own weights, read one after the other as a decoding step reads
them (a step's int8 weights do not fit in the caches of a core; one layer's do), and prints the machine's memory
bandwidth (sum of 2 GiB, same threads) beside them: the ceiling of every row.
What inference/speed.py uses was chosen from this table: `aten._weight_int8pack_mm` for int8 on CPU.

Candidates: torch's own kernels (F.linear in float32 and bfloat16, bfloat16 as (W @ x^T)^T, int8 weights with
bfloat16 activations `aten._weight_int8pack_mm`, int8 weights and dynamically quantized int8 activations
`torch._int_mm`, int4 weights in groups of 128 `aten._weight_int4pack_mm_for_cpu`), torchao's int8 configs when
torchao is installed, and fbgemm's dynamic quantization through the deprecated `torch.ao.quantization`.
"""

import argparse
import os
import statistics
import time
import warnings
from functools import partial

import torch
import torch.nn.functional as F

D, FFN = 1024, 4096
SHAPES = [(D, D)] * 4 + [(FFN, D), (D, FFN)]  # [D_out, D_in]


def int8_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = w.abs().amax(1) / 127  # [D_out]
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def int4_groups(w: torch.Tensor, group: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric 4-bit codes in groups of `group` inputs, packed for the CPU kernel (w = (q - 8) * s + z)."""
    out, inp = w.shape
    grouped = w.reshape(out, inp // group, group)
    low, high = grouped.amin(-1, keepdim=True), grouped.amax(-1, keepdim=True)
    scale = (high - low).clamp(min=1e-8) / 15
    q = torch.round((grouped - low) / scale).clamp(0, 15).to(torch.int32).reshape(out, inp)
    scales_zeros = torch.stack([scale.reshape(out, -1), (low + 8 * scale).reshape(out, -1)], -1)  # [out, G, 2]
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 8)
    return packed, scales_zeros.transpose(0, 1).contiguous().bfloat16()


def dynamic_int8(x: torch.Tensor, qt: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int8 activations quantized per row on the fly, int32 sums (torch._int_mm), then both scales."""
    x_scale = x.abs().amax(1, keepdim=True).clamp(min=1e-8) / 127
    xq = torch.round(x / x_scale).clamp(-127, 127).to(torch.int8)
    return torch._int_mm(xq, qt).float() * x_scale * scale


def candidates(weights: list[torch.Tensor], inputs: list[torch.Tensor]) -> dict:
    """name -> (bytes per weight, six zero-argument products)."""
    pairs = list(zip(weights, inputs, strict=True))
    bf = [(w.bfloat16(), x.bfloat16()) for w, x in pairs]
    q8 = [(*int8_per_channel(w), x) for w, x in pairs]
    q4 = [(*int4_groups(w), x.bfloat16()) for w, x in pairs]
    out = {
        "float32 F.linear": (4, [partial(F.linear, x, w) for w, x in pairs]),
        "bfloat16 F.linear": (2, [partial(F.linear, x, w) for w, x in bf]),
        "bfloat16 (W @ x^T)^T": (2, [partial(transposed, x, w) for w, x in bf]),
        "int8 w, bf16 act: _weight_int8pack_mm": (
            1, [partial(torch.ops.aten._weight_int8pack_mm, x.bfloat16(), q, s.bfloat16()) for q, s, x in q8]),
        "int8 w, int8 dyn act: torch._int_mm": (
            1, [partial(dynamic_int8, x, q.t().contiguous(), s) for q, s, x in q8]),
        "int4 w (g128), bf16 act": (
            0.5, [partial(torch.ops.aten._weight_int4pack_mm_for_cpu, x, q, 128, sz) for q, sz, x in q4]),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dynamic = [torch.ao.quantization.quantize_dynamic(linear(w), {torch.nn.Linear}, dtype=torch.qint8)
                   for w in weights]
    out["fbgemm dyn int8 (deprecated ao)"] = (1, [partial(m, x) for m, x in zip(dynamic, inputs, strict=True)])
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_
    except ImportError:
        return out
    for name, config, dtype in (("torchao int8 weight-only, bf16", Int8WeightOnlyConfig(), torch.bfloat16),
                                ("torchao int8 dyn act + int8 w", Int8DynamicActivationInt8WeightConfig(),
                                 torch.float32)):
        modules = [linear(w.to(dtype)) for w in weights]
        for module in modules:
            quantize_(module, config)
        out[name] = (1, [partial(m, x.to(dtype)) for m, x in zip(modules, inputs, strict=True)])
    return out


def transposed(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (w @ x.t()).t()


def linear(w: torch.Tensor) -> torch.nn.Module:
    module = torch.nn.Sequential(torch.nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=w.dtype))
    module[0].weight.data = w
    return module


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2, help="activation rows (2: one prompt with CFG)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--layers", type=int, default=1, help="layers of their own weights (24: musicgen-small)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    weights = [torch.randn(shape) * 0.02 for shape in SHAPES * args.layers]
    inputs = [torch.randn(args.rows, w.shape[1]) for w in weights]
    reference = [F.linear(x, w) for w, x in zip(weights, inputs, strict=True)]
    params = sum(w.numel() for w in weights)
    print(f"settings: {vars(args)}; torch {torch.__version__}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, AMX {torch.cpu._is_amx_tile_supported()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.layers > 1:
        buffer = torch.ones(2**29)  # 2 GiB
        sums = []
        for _ in range(3):
            start = time.perf_counter()
            buffer.sum()
            sums.append(buffer.numel() * 4 / (time.perf_counter() - start) / 1e9)
        print(f"memory bandwidth (sum of 2 GiB, {args.threads} threads): {statistics.median(sums):.1f} GB/s")
        del buffer
    runs = candidates(weights, inputs)
    times = {name: [] for name in runs}
    for _ in range(args.repeats):  # alternate the candidates, round after round
        for name, (_, products) in runs.items():
            start = time.perf_counter()
            for product in products:
                product()
            times[name].append(time.perf_counter() - start)
    print(f"{'candidate':40}{'ms':>8}{'GB/s':>8}{'rel err':>10}")
    for name, (bytes_per_weight, products) in runs.items():
        seconds = statistics.median(times[name])
        error = max(((p().float() - r).norm() / r.norm()).item() for p, r in zip(products, reference, strict=True))
        print(f"{name:40}{seconds * 1e3:8.2f}{params * bytes_per_weight / seconds / 1e9:8.1f}{error:10.4f}")


if __name__ == "__main__":
    main()

"""LoRA against full fine-tuning on the musicgen-small shape: one training step's time and peak memory, and the
adapter's bytes against the LM's.

    python bench/lora.py [--seconds 2] [--batch 1] [--steps 3] [--ranks 8,16] [--precisions 32-true,bf16-mixed]

Each variant runs in a fresh process (so that its peak resident memory is its own): the LM built with random
weights at the musicgen-small shape (lm/config.py: dim 1024, 24 layers, 16 heads, FFN 4096, 4 x 2048 codes, a
768-wide text projection), LoRA layers added as `train.py lm --lora-rank` adds them (training/lora.py, default
targets) or every weight trained, AdamW as the training uses it (lr 1e-4, weight decay 0.1, gradient norm clipped
to 1). A step: teacher-forced loss over `--seconds` of codes at 50 frames/s with a 16-token condition, backward,
clip, optimizer step; bf16-mixed runs the forward under torch.autocast(bfloat16) as Lightning's "bf16-mixed"
does (float32 weights, gradients and optimizer state). One warm-up step, then the median of `--steps` steps.

Peak memory: the process's peak resident set (ru_maxrss) after the steps, and what the step adds to the process
after the model is built (peak minus the resident set before the first step).
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESET = "musicgen-small"
FULL_NEEDS_MB = 9000  # full fine-tuning of the 420M-parameter LM: 4 x 1.7 GB (weights, gradients, Adam) + the rest


def available_mb() -> float:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("MemAvailable")) / 1024


def resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(rank: int, precision: str, seconds: float, batch: int, steps: int) -> dict:
    """One variant, in this process: {step_s, peak_mb, step_added_mb, trained, lm_params, adapter_bytes}."""
    import torch

    from lm.config import lm_preset
    from lm.losses import delayed_cross_entropy, teacher_forcing_inputs
    from lm.model import MusicGenLM
    from training.lm_settings import parse_lora_targets
    from training.lora import add_lora

    torch.manual_seed(0)
    config = lm_preset(PRESET)
    lm = MusicGenLM(config).train()
    lm_params = sum(p.numel() for p in lm.parameters())
    if rank:
        add_lora(lm, rank, rank, 0.0, parse_lora_targets("self_attn,cross_attn"))
    params = [p for p in lm.parameters() if p.requires_grad]
    trained = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, eps=1e-8)
    T = round(seconds * 50)
    codes = torch.randint(0, config.card, (batch, config.num_codebooks, T))  # [B, K, T]
    text = torch.randn(batch, 16, config.cond_dim)  # [B, L, D_text]
    inputs = teacher_forcing_inputs(codes, config.delays, config.special_token)  # [B, K, T + 1]

    def step() -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            logits = lm(inputs, lm.project_condition(text))  # [B, K, T + 1, V]
            loss = delayed_cross_entropy(logits, codes, config.delays).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    before = resident_mb()
    times = [step() for _ in range(steps + 1)][1:]  # the first step allocates the optimizer state: warm-up
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step_s": statistics.median(times), "peak_mb": peak, "step_added_mb": peak - before,
            "trained": trained, "lm_params": lm_params, "adapter_bytes": 4 * trained if rank else None,
            "lm_bytes": 4 * lm_params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of codes per example (50 frames/s)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--ranks", default="8,16", help="LoRA ranks; full fine-tuning is always measured")
    parser.add_argument("--precisions", default="32-true,bf16-mixed")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # "RANK,PRECISION": measure in this process, print JSON
    args = parser.parse_args()
    if args.one:
        rank, precision = args.one.split(",")
        print(json.dumps(measure(int(rank), precision, args.seconds, args.batch, args.steps)))
        return
    import torch

    print(f"bench/lora.py: {PRESET} shape, batch {args.batch} x {args.seconds:g} s of codes, median of {args.steps} "
          f"steps after a warm-up, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"AMX: {torch.cpu._is_amx_tile_supported()}")
    with open("/proc/loadavg") as f:
        print(f"load average before: {f.read().split()[0]}")
    ranks = [0, *(int(r) for r in args.ranks.split(","))]
    print("\n| method | precision | trained params | step (s) | vs full | peak RSS (MB) | vs full | step adds (MB) |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    rows = {}
    for precision in args.precisions.split(","):
        for rank in ranks:
            name = "full fine-tuning" if not rank else f"LoRA r={rank}"
            if not rank and available_mb() < FULL_NEEDS_MB:  # weights, gradients and Adam's two moments
                print(f"| {name} | {precision} | skipped: {available_mb():.0f} MB available, it needs about "
                      f"{FULL_NEEDS_MB} MB | | | | | |", flush=True)
                continue
            command = [sys.executable, __file__, "--one", f"{rank},{precision}", "--seconds", str(args.seconds),
                       "--batch", str(args.batch), "--steps", str(args.steps)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"| {name} | {precision} | failed (exit status {done.returncode}) | | | | | |", flush=True)
                continue
            row = rows[rank, precision] = json.loads(done.stdout.strip().splitlines()[-1])
            full = rows.get((0, precision))
            time_ratio, memory_ratio = ("-", "-") if full is None else (
                f"{row['step_s'] / full['step_s']:.2f}x", f"{row['peak_mb'] / full['peak_mb']:.0%}")
            print(f"| {name} | {precision} | {row['trained'] / 1e6:.2f}M | {row['step_s']:.2f} | {time_ratio} | "
                  f"{row['peak_mb']:.0f} | {memory_ratio} | {row['step_added_mb']:.0f} |", flush=True)
    print("\n| adapter | bytes (float32) | LM bytes | share |\n|---|---|---|---|")
    for rank in ranks[1:]:
        row = next((r for (k, _), r in rows.items() if k == rank), None)
        if row is not None:
            print(f"| r={rank}, self+cross attention | {row['adapter_bytes'] / 1e6:.1f} MB | "
                  f"{row['lm_bytes'] / 1e6:.0f} MB | {row['adapter_bytes'] / row['lm_bytes']:.2%} |")
    with open("/proc/loadavg") as f:
        print(f"\nload average after: {f.read().split()[0]}")


if __name__ == "__main__":
    main()

"""Generation speed: our fast decoding path (fp32, bf16) against transformers' MusicGen on the same random weights.

    python bench/generation.py [--shape small|medium|large] [--seconds 1] [--repeats 7] [--threads N]
                               [--dtypes float32,bfloat16] [--device cpu|cuda] [--compile] [--no-memory]

Builds transformers' MusicgenForConditionalGeneration with the published LM shape (musicgen-small by default:
dim 1024, 24 layers, 16 heads, FFN 4096, 4 x 2048 codebooks) and random weights; T5 (d_model 768, one layer)
and the codec are tiny, as in tests/test_full_size.py. Saves it and loads it into ours with
`MusicGen.from_pretrained`. Then, in one process:

1. checks that greedy codes (CFG 3) from `generate_window_fast` in float32 equal transformers';
2. times the default workload, end to end (T5, the LM over all pattern steps, the codec), alternating the
   variants run after run: transformers `generate` (float32), our reference loop (`generate_window`, float32),
   and `generate_window_fast` in each dtype. The speed-up is the median over rounds of the ratio within a
   round (a shared machine's load drifts between rounds);
3. measures the memory bandwidth in every round (sum of a 2 GiB tensor) and the bytes one decode step must
   read (LM weights + the KV cache so far), which bound the decode speed;
4. measures reduced-precision top-1 agreement with float32: the CFG-guided next-token argmax of each
   codebook, teacher-forced on a float32-sampled sequence (`--agreement-steps` steps x K codebooks);
5. peak memory (VmHWM) of each variant, each in a fresh subprocess, since one process's peak RSS cannot be
   split between variants: the model loaded from disk (ours with the LM in the variant's dtype), one
   generation (`--no-memory` skips this).

Workload (default): 1 prompt with CFG 3, top-k 250 sampling, 1 s of audio = 50 frames = 53 pattern steps.
The real-time factor is audio seconds per wall second (50 pattern steps ~ 1 s of audio).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import transformers  # noqa: E402

from inference import MusicGen  # noqa: E402
from inference.fast import fast_lm, generate_window_fast  # noqa: E402
from inference.fast_decoder import FastLM  # noqa: E402
from inference.generation import SamplingParams, generate_window  # noqa: E402
from lm.patterns import build_delay_pattern  # noqa: E402
from lm.sampling import classifier_free_guidance  # noqa: E402
from tests.musicgen_oracle import hf_generate_codes, word_tokenizer  # noqa: E402

SHAPES = {"small": (1024, 24, 16), "medium": (1536, 48, 24), "large": (2048, 48, 32)}  # dim, layers, heads
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PROMPT = "80s pop track with bassy drums and synth"
CARD = 2048


def random_musicgen(shape: str) -> transformers.MusicgenForConditionalGeneration:
    dim, layers, heads = SHAPES[shape]
    text = transformers.T5Config(vocab_size=64, d_model=768, d_kv=64, d_ff=256, num_layers=1, num_heads=12)
    audio = transformers.EncodecConfig(
        sampling_rate=32_000, num_filters=4, upsampling_ratios=[8, 5, 4, 4], hidden_size=8, codebook_size=CARD,
        target_bandwidths=[2.2], use_causal_conv=False, use_conv_shortcut=False, num_lstm_layers=1)
    decoder = transformers.MusicgenDecoderConfig(
        vocab_size=CARD, hidden_size=dim, num_hidden_layers=layers, num_attention_heads=heads, ffn_dim=4 * dim,
        num_codebooks=4, max_position_embeddings=2048, pad_token_id=CARD, bos_token_id=CARD)
    torch.manual_seed(0)
    config = transformers.MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    model = transformers.MusicgenForConditionalGeneration(config).eval()
    model.generation_config.decoder_start_token_id = CARD
    model.generation_config.pad_token_id = CARD
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Runners:
    """The end-to-end generations being compared, each text -> codes -> audio for one prompt."""

    def __init__(self, oracle, ours: MusicGen, args: argparse.Namespace) -> None:
        self.oracle, self.ours, self.args, self.device = oracle, ours, args, torch.device(args.device)
        self.inputs = {k: v.to(self.device) for k, v in word_tokenizer()([PROMPT], return_tensors="pt").items()}
        self.frames = round(args.seconds * 50)
        self.params = SamplingParams(top_k=args.top_k, cfg_coef=args.cfg)

    def transformers(self) -> torch.Tensor:
        return self.oracle.generate(**self.inputs, do_sample=True, top_k=self.args.top_k,
                                    guidance_scale=self.args.cfg, max_new_tokens=self.frames + 3)

    def reference(self) -> torch.Tensor:
        return self._ours(generate_window)

    def fast(self, dtype: torch.dtype) -> torch.Tensor:
        return self._ours(generate_window_fast, compile=self.args.compile, dtype=dtype)

    def _ours(self, window, **extra) -> torch.Tensor:
        cond = self.ours._condition([PROMPT], with_null=self.args.cfg > 1)
        prompt = torch.zeros(1, 4, 0, dtype=torch.long, device=self.device)
        codes = window(self.ours.lm, cond, prompt, self.frames, self.params, **extra)
        return self.ours.decode(codes)

    def variants(self) -> dict:
        out = {"transformers fp32": self.transformers, "ours reference fp32": self.reference}
        out.update({f"ours fast {name}": (lambda d=DTYPES[name]: self.fast(d)) for name in self.args.dtypes})
        return out


def time_alternating(variants: dict, repeats: int, device: torch.device) -> tuple[dict[str, list[float]], list[float]]:
    """Wall seconds of each variant, run in turn, round after round (after one warm-up round), and the memory
    bandwidth measured in each round: the machine may be shared, so what is compared is measured side by side."""
    times, bandwidths = {name: [] for name in variants}, []
    buffer = torch.ones(2**29, device=device)  # 2 GiB of float32, larger than the caches
    for round_ in range(repeats + 1):
        for name, fn in variants.items():
            sync(device)
            start = time.perf_counter()
            with torch.inference_mode():
                fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
        bandwidths.append(memory_bandwidth(buffer, device))
        if round_ == 0:  # warm-up
            times, bandwidths = {name: [] for name in variants}, []
            continue
        print(f"  round {round_}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items())
              + f", bandwidth {bandwidths[-1] / 1e9:.1f} GB/s", flush=True)
    return times, bandwidths


def memory_bandwidth(buffer: torch.Tensor, device: torch.device, repeats: int = 3) -> float:
    """Bytes per second read by a sum over `buffer` (median of a few)."""
    samples = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        buffer.sum()
        sync(device)
        samples.append(time.perf_counter() - start)
    return buffer.nbytes / statistics.median(samples)


def bytes_per_step(fast: FastLM, steps: int, batch: int) -> tuple[int, int]:
    """(weight bytes, mean KV-cache bytes) one decode step reads; embeddings read only K rows (ignored)."""
    weights = fast.heads.nbytes + sum(t.nbytes for t in fast.out_norm)
    for w in fast.layers:
        weights += sum(t.nbytes for t in w.qkv) + w.self_out.nbytes + w.ffn_in.nbytes + w.ffn_out.nbytes
        weights += sum(t.nbytes for norm in (w.self_norm, w.cross_norm, w.ffn_norm) if norm for t in norm)
        weights += w.cross_q.nbytes + w.cross_out.nbytes if w.cross_q is not None else 0
    config = fast.config
    element = fast.heads.element_size()
    cache = 2 * config.num_layers * batch * config.dim * element * (steps / 2)  # keys + values, mean length
    return weights, int(cache)


@torch.inference_mode()
def greedy_equal(runners: Runners) -> bool:
    want, _ = hf_generate_codes(runners.oracle, [PROMPT], runners.frames, guidance_scale=runners.args.cfg)
    cond = runners.ours._condition([PROMPT], with_null=True)
    prompt = torch.zeros(1, 4, 0, dtype=torch.long, device=runners.ours.device)
    got = generate_window_fast(runners.ours.lm, cond, prompt, runners.frames,
                               SamplingParams(use_sampling=False, cfg_coef=runners.args.cfg))
    return torch.equal(got.cpu(), want.cpu())


@torch.inference_mode()
def top1_agreement(ours: MusicGen, dtype: torch.dtype, steps: int, cfg: float) -> dict[str, float]:
    """Teacher-forced next-token top-1 agreement of `dtype` with float32, every step and codebook.

    The sequence is sampled in float32; both precisions then read it step by step (prefill + decode steps).
    Returns the agreement on the CFG-guided logits (what is sampled from) and on the conditional logits
    alone, the number of positions, and for the guided disagreements the largest float32 logit gap between
    float32's choice and the reduced-precision choice (small gaps = near-ties).
    """
    lm, device = ours.lm, ours.device
    cond = ours._condition([PROMPT], with_null=True)
    frames = steps - max(lm.config.delays)
    codes = generate_window_fast(lm, cond, torch.zeros(1, 4, 0, dtype=torch.long, device=device), frames,
                                 SamplingParams(cfg_coef=cfg), torch.Generator(device).manual_seed(0))
    sequence = build_delay_pattern(codes, lm.config.delays, lm.config.special_token)  # [1, K, S]
    logits = {}
    for name, fast in (("ref", fast_lm(lm, torch.float32)), ("low", fast_lm(lm, dtype))):
        state = fast.new_state(cond, sequence.shape[-1])
        steps_logits = [fast.prefill(state, sequence[..., :1], cond)]
        steps_logits += [fast.decode_one_step(state, sequence[..., s], s) for s in range(1, sequence.shape[-1] - 1)]
        logits[name] = torch.stack(steps_logits)  # [S - 1, 2, K, V]
    guided = {name: classifier_free_guidance(x.transpose(0, 1), cfg) for name, x in logits.items()}  # [1, S-1, K, V]
    pick_ref, pick_low = guided["ref"].argmax(-1), guided["low"].argmax(-1)
    gap = guided["ref"].max(-1).values - guided["ref"].gather(-1, pick_low[..., None])[..., 0]
    same = pick_ref == pick_low
    conditional = logits["ref"][:, 0].argmax(-1) == logits["low"][:, 0].argmax(-1)
    return {"guided": same.float().mean().item(), "conditional": conditional.float().mean().item(),
            "positions": same.numel(), "max_gap": gap[~same].max().item() if (~same).any() else 0.0}


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that across fork and exec."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def child_peak_memory(folder: str, variant: str, args: argparse.Namespace) -> None:
    """Run in a fresh process: load one model, generate once, print peak RSS (MiB) after loading and at the end."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if variant == "transformers fp32":
        oracle = transformers.MusicgenForConditionalGeneration.from_pretrained(folder).eval().to(device)
        oracle.generation_config.decoder_start_token_id = CARD
        oracle.generation_config.pad_token_id = CARD
        ours = None
    else:  # the LM loaded in the variant's dtype, as one would deploy it
        dtype = DTYPES[variant.split()[-1].replace("fp32", "float32")]
        oracle, ours = None, MusicGen.from_pretrained(folder, device=device, dtype=dtype)
    loaded = peak_rss_mib()
    runners = Runners(oracle, ours, args)
    with torch.inference_mode():
        runners.variants()[variant]()
    peak = peak_rss_mib()
    print(f"PEAK {loaded:.0f} {peak:.0f}")


def peak_memory(folder: str, variant: str, args: argparse.Namespace) -> tuple[float, float]:
    command = [sys.executable, __file__, "--child", variant, "--folder", folder, "--threads", str(args.threads),
               "--device", args.device, "--seconds", str(args.seconds), "--dtypes", ",".join(args.dtypes)]
    command += ["--compile"] if args.compile else []
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    loaded, peak = next(line for line in out.splitlines() if line.startswith("PEAK")).split()[1:]
    return float(loaded), float(peak)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small", help="published LM shape")
    parser.add_argument("--seconds", type=float, default=1.0, help="audio per generation (50 frames per second)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each variant (median)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--dtypes", type=lambda s: s.split(","), default=["float32", "bfloat16"],
                        help="fast-path dtypes, comma-separated: float32, bfloat16, float16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="fast path with CUDA graphs (CUDA only)")
    parser.add_argument("--top-k", type=int, default=250)
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--agreement-steps", type=int, default=78, help="teacher-forced steps (x K positions)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-variant peak-memory subprocesses")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.child:
        return child_peak_memory(args.folder, args.child, args)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"settings: {vars(args)}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}, "
          f"device {device}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"load average {os.getloadavg()[0]:.1f}")

    with tempfile.TemporaryDirectory() as folder:
        oracle = random_musicgen(args.shape)
        oracle.save_pretrained(folder)
        word_tokenizer().save_pretrained(folder)
        oracle = oracle.to(device)
        ours = MusicGen.from_pretrained(folder, device=device, dtype=torch.float32)
        runners = Runners(oracle, ours, args)
        start = time.perf_counter()
        for name in args.dtypes:
            fast_lm(ours.lm, DTYPES[name])
        print(f"fast-path weight preparation ({', '.join(args.dtypes)}): {time.perf_counter() - start:.1f}s, once")

        print(f"greedy codes (CFG {args.cfg}, {runners.frames} frames), fast float32 == transformers: "
              f"{greedy_equal(runners)}")
        for name in args.dtypes:
            if name != "float32":
                agree = top1_agreement(ours, DTYPES[name], args.agreement_steps, args.cfg)
                print(f"{name} teacher-forced top-1 agreement with float32 over {agree['positions']} positions: "
                      f"{agree['guided']:.1%} on CFG-guided logits (disagreements within {agree['max_gap']:.3f} "
                      f"of float32's top logit), {agree['conditional']:.1%} on conditional logits")

        print(f"timing {runners.frames} frames ({runners.frames + 3} pattern steps), 1 prompt, CFG {args.cfg}, "
              f"top-k {args.top_k}, {args.repeats} alternating rounds:")
        variants = runners.variants()
        times, bandwidths = time_alternating(variants, args.repeats, device)
        steps = runners.frames + 3
        memory = {} if args.no_memory else {name: peak_memory(folder, name, args) for name in variants}

    bandwidth = statistics.median(bandwidths)
    base = times["transformers fp32"]
    print(f"\nmemory bandwidth (sum of 2 GiB, {torch.get_num_threads()} threads, median of the rounds): "
          f"{bandwidth / 1e9:.1f} GB/s (rounds: {min(bandwidths) / 1e9:.1f} to {max(bandwidths) / 1e9:.1f})")
    print(f"{'variant':22}{'median s':>9}{'steps/s':>9}{'x real time':>12}{'speed-up':>9}{'per round':>20}"
          f"{'bytes/step':>12}{'limit steps/s':>14}{'RSS load/peak MiB':>19}")
    for name, samples in times.items():
        seconds = statistics.median(samples)
        ratios = sorted(b / t for b, t in zip(base, samples, strict=True))
        dtype = DTYPES[name.split()[-1].replace("fp32", "float32")]
        weights, cache = bytes_per_step(fast_lm(ours.lm, dtype), steps, 2 if args.cfg > 1 else 1)
        limit = bandwidth / (weights + cache)
        rss = "{:.0f} / {:.0f}".format(*memory[name]) if name in memory else "-"
        print(f"{name:22}{seconds:9.2f}{steps / seconds:9.1f}{runners.frames / 50 / seconds:12.2f}"
              f"{statistics.median(ratios):8.2f}x{ratios[0]:9.2f}-{ratios[-1]:.2f}x"
              f"{(weights + cache) / 1e9:10.2f}GB{limit:14.1f}{rss:>19}")
    hf_steps = steps / statistics.median(base)
    for name in args.dtypes:
        weights, cache = bytes_per_step(fast_lm(ours.lm, DTYPES[name]), steps, 2 if args.cfg > 1 else 1)
        print(f"bandwidth ceiling of a {name} step against transformers' measured speed: "
              f"{bandwidth / (weights + cache) / hf_steps:.2f}x")
    print("speed-up: median over rounds of (transformers fp32 time / variant time) in the same round, end to end; "
          "per round: its range.\nlimit: bandwidth / bytes per step (weights + mean KV cache), the ceiling of "
          "the decode steps.\nRSS: peak resident set (VmHWM) of a fresh process after loading the checkpoint, and "
          "after one generation.")


if __name__ == "__main__":
    main()

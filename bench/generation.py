"""Generation speed: our decoding loop (fp32, bf16) against transformers' MusicGen on the same random weights.

    python bench/generation.py [--shape small|medium|large] [--seconds 1] [--repeats 7] [--threads N]
                               [--variants float32,bfloat16,int8,int8-heads,...] [--device cpu|cuda] [--cuda-graph]
                               [--no-memory]
                               [--baseline REV]

Builds transformers' MusicgenForConditionalGeneration with the published LM shape (musicgen-small by default:
dim 1024, 24 layers, 16 heads, FFN 4096, 4 x 2048 codebooks) and random weights; T5 (d_model 768, one layer)
and the codec are tiny, as in tests/test_full_size.py. Saves it and loads it into ours with
`MusicGen.from_pretrained`. Then, in one process:

1. checks that greedy codes (CFG 3) from `generate_window` in float32 equal transformers' (at most 1 s);
2. times the default workload, end to end (T5, the LM over all pattern steps, the codec), alternating the
   variants run after run: transformers `generate` (float32) and our `generate_window` with the LM in each
   dtype (`inference.speed.prepare_for_inference`) or int8 (`quantize_int8`, the CPU's default), or a candidate
   not offered (bench/candidates.py: int8 heads, a bfloat16 residual stream, int4), plus, with `--baseline REV`,
   the decoding path of another commit of this repository loaded side by side (its
   `inference.fast.generate_window_fast` where it has one, e.g. 95037c9, before the one-model refactor). The
   speed-up is the median over rounds of the ratio within a round (a shared machine's load drifts between
   rounds); the warm-up round generates at most 1 s;
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
import copy
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import threads  # noqa: E402, I001  (before torch: OpenMP's wait policy)
import torch  # noqa: E402

import transformers  # noqa: E402
from baseline import import_from_commit  # noqa: E402
from candidates import CANDIDATES, Int8DynamicLinear  # noqa: E402

from inference import MusicGen  # noqa: E402
from inference.generation import generate_window, last_logits  # noqa: E402
from inference.speed import compute_dtype, prepare_for_inference, quantize_int8  # noqa: E402
from lm.model import MusicGenLM  # noqa: E402
from lm.patterns import build_delay_pattern  # noqa: E402
from lm.sampling import SamplingParams, classifier_free_guidance  # noqa: E402
from tests.musicgen_oracle import hf_generate_codes, word_tokenizer  # noqa: E402

SHAPES = {"small": (1024, 24, 16), "medium": (1536, 48, 24), "large": (2048, 48, 32)}  # dim, layers, heads
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# int8: weight-only int8 linears, bfloat16 activations on CPU, float16 on CUDA; then bench/candidates.py's
VARIANTS = (*DTYPES, "int8", *CANDIDATES)
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
    """The end-to-end generations being compared, each text -> codes -> audio for one prompt.

    `models` maps a dtype name to our MusicGen with its LM in that dtype; `baseline`, when given, is
    (label, window function, {dtype name: that commit's LM}) from `load_baseline`.
    """

    def __init__(self, oracle, models: dict[str, MusicGen], args: argparse.Namespace, baseline=None,
                 batch: int = 1) -> None:
        self.oracle, self.models, self.args, self.device = oracle, models, args, torch.device(args.device)
        self.baseline, self.prompts = baseline, [PROMPT] * batch
        self.inputs = {k: v.to(self.device) for k, v in word_tokenizer()(self.prompts, return_tensors="pt").items()}
        self.frames = round(args.seconds * 50)
        self.sampling = SamplingParams(top_k=args.top_k, cfg_coef=args.cfg)

    def transformers(self) -> torch.Tensor:
        return self.oracle.generate(**self.inputs, do_sample=True, top_k=self.args.top_k,
                                    guidance_scale=self.args.cfg, max_new_tokens=self.frames + 3)

    def ours(self, name: str) -> torch.Tensor:
        mg = self.models[name]
        cond = mg._condition(self.prompts, with_null=self.args.cfg > 1)
        prompt = torch.zeros(len(self.prompts), 4, 0, dtype=torch.long, device=self.device)
        codes = generate_window(mg.lm, cond, prompt, self.frames, sampling=self.sampling,
                                cuda_graph=self.args.cuda_graph)
        return mg.decode(codes)

    def old(self, name: str) -> torch.Tensor:
        _, window_fn, params_type, lms = self.baseline
        mg = next(iter(self.models.values()))  # T5 and the codec are the same in every variant
        cond = mg._condition(self.prompts, with_null=self.args.cfg > 1)
        prompt = torch.zeros(len(self.prompts), 4, 0, dtype=torch.long, device=self.device)
        params = params_type(top_k=self.args.top_k, cfg_coef=self.args.cfg)
        codes = window_fn(lms["float32"], cond, prompt, self.frames, params, compile=self.args.cuda_graph,
                          dtype=DTYPES[name])
        return mg.decode(codes)

    def variants(self) -> dict:
        out = {"transformers fp32": self.transformers} if self.oracle is not None else {}
        if self.baseline is not None:
            out.update({f"{self.baseline[0]} {short(name)}": (lambda n=name: self.old(n))
                        for name in self.args.variants if name in DTYPES})
        out.update({f"ours {short(name)}": (lambda n=name: self.ours(n)) for name in self.models})
        return out


def transformed(lm: MusicGenLM, variant: str) -> MusicGenLM:
    """A copy of the float32 LM with the variant's transform applied (inference/speed.py)."""
    lm = copy.deepcopy(lm)
    if variant in CANDIDATES:
        return CANDIDATES[variant](lm)
    return quantize_int8(lm) if variant == "int8" else prepare_for_inference(lm, DTYPES[variant])


def short(dtype_name: str) -> str:
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dtype_name, dtype_name)


def load_baseline(rev: str, lm: MusicGenLM, dtypes: list[str]):
    """Another commit's decoding path (bench/baseline.py): (label, window fn, params type, {dtype: its LM}).

    Its `inference.fast.generate_window_fast` drives its own MusicGenLM, which gets this LM's weights.
    """
    modules = import_from_commit(rev, ["inference.fast", "inference.generation", "lm.config", "lm.model"])
    fast = modules["inference.fast"]
    old_config = modules["lm.config"].LMConfig(**dataclasses.asdict(lm.config))
    old_lm = modules["lm.model"].MusicGenLM(old_config).to(lm.out_norm.weight.device).eval()
    old_lm.load_state_dict(lm.state_dict())
    for name in dtypes:  # the old path prepares its weights once per dtype: not part of the timing
        if name in DTYPES:
            fast.fast_lm(old_lm, DTYPES[name])
    return f"{rev[:7]} fast", fast.generate_window_fast, modules["inference.generation"].SamplingParams, \
        {"float32": old_lm}


def time_alternating(variants: dict, repeats: int, device: torch.device, warmup: dict | None = None
                     ) -> tuple[dict[str, list[float]], dict[str, list[float]], list[float]]:
    """Wall seconds and CPU seconds (this process's, all threads) of each variant, run in turn, round after round
    (after one warm-up round of `warmup`, default the variants themselves), and the memory bandwidth measured in
    each round: the machine may be shared, so what is compared is measured side by side. On a shared machine
    the CPU seconds of a one-thread run are closer to what an idle machine takes than the wall seconds (the
    time spent waiting for a core is not counted; memory shared with the other processes still slows it)."""
    buffer = torch.ones(2**29, device=device)  # 2 GiB of float32, larger than the caches
    with torch.inference_mode():
        for fn in (warmup or variants).values():
            fn()
    times, cpu_times, bandwidths = {name: [] for name in variants}, {name: [] for name in variants}, []
    for round_ in range(1, repeats + 1):
        for name, fn in variants.items():
            sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            with torch.inference_mode():
                fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)
        bandwidths.append(memory_bandwidth(buffer, device))
        print(f"  round {round_}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items())
              + f", bandwidth {bandwidths[-1] / 1e9:.1f} GB/s, load average {os.getloadavg()[0]:.1f}", flush=True)
    return times, cpu_times, bandwidths


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


def bytes_per_step(lm: MusicGenLM, steps: int, batch: int) -> tuple[int, int]:
    """(weight bytes, mean KV-cache bytes) one decode step reads: every weight of the transformer and the heads,
    except the cross-attention key/value projections (run once per window) and the embeddings (K rows read)."""
    skipped = ("embeddings.", "cond_proj.", "chroma_proj.", "cross_attn.k_proj.", "cross_attn.v_proj.")
    weights = sum(t.nbytes for name, t in lm.state_dict().items() if not any(part in name for part in skipped))
    config = lm.config
    float_activations = isinstance(lm.transformer.layers[0].linear1, Int8DynamicLinear)  # W8A8: float32 in, out
    element = 4 if float_activations else compute_dtype(lm).itemsize  # the KV cache's
    cache = 2 * config.num_layers * batch * config.dim * element * (steps / 2)  # keys + values, mean length
    return weights, int(cache)


@torch.inference_mode()
def greedy_equal(runners: Runners, frames: int) -> bool:
    want, _ = hf_generate_codes(runners.oracle, [PROMPT], frames, guidance_scale=runners.args.cfg)
    mg = runners.models["float32"]
    cond = mg._condition([PROMPT], with_null=True)
    prompt = torch.zeros(1, 4, 0, dtype=torch.long, device=mg.device)
    got = generate_window(mg.lm, cond, prompt, frames,
                          sampling=SamplingParams(use_sampling=False, cfg_coef=runners.args.cfg))
    return torch.equal(got.cpu(), want.cpu())


@torch.inference_mode()
def top1_agreement(reference: MusicGen, lm: MusicGenLM, steps: int, cfg: float) -> dict[str, float]:
    """Teacher-forced next-token top-1 agreement of a transformed `lm` with the float32 one, every step and codebook.

    The sequence is sampled in float32; both models then read it step by step (prefill + one-step passes).
    Returns the agreement on the CFG-guided logits (what is sampled from) and on the conditional logits
    alone, the number of positions, the mean change of the guided cross-entropy of the sampled tokens, and for
    the guided disagreements the largest float32 logit gap between float32's choice and the other one (small
    gaps = near-ties).
    """
    device = reference.device
    cond = reference._condition([PROMPT], with_null=True)
    frames = steps - max(reference.lm.config.delays)
    codes = generate_window(reference.lm, cond, torch.zeros(1, 4, 0, dtype=torch.long, device=device), frames,
                            sampling=SamplingParams(cfg_coef=cfg), generator=torch.Generator(device).manual_seed(0))
    sequence = build_delay_pattern(codes, reference.lm.config.delays, reference.lm.config.special_token)  # [1, K, S]
    doubled = torch.cat([sequence, sequence])  # [2, K, S]
    logits = {}
    for name, model in (("ref", reference.lm), ("low", lm)):
        cache = model.new_cache(sequence.shape[-1])
        steps_logits = [last_logits(model, doubled[..., :1], cond, cache)]
        steps_logits += [last_logits(model, doubled[..., s : s + 1], None, cache)
                         for s in range(1, sequence.shape[-1] - 1)]
        logits[name] = torch.stack(steps_logits)  # [S - 1, 2, K, V]
    guided = {name: classifier_free_guidance(x.transpose(0, 1), cfg) for name, x in logits.items()}  # [1, S-1, K, V]
    pick_ref, pick_low = guided["ref"].argmax(-1), guided["low"].argmax(-1)
    gap = guided["ref"].max(-1).values - guided["ref"].gather(-1, pick_low[..., None])[..., 0]
    same = pick_ref == pick_low
    conditional = logits["ref"][:, 0].argmax(-1) == logits["low"][:, 0].argmax(-1)
    targets = sequence[..., 1:].transpose(1, 2)  # [1, S-1, K]: the token each step's logits predict
    known = targets != reference.lm.config.special_token

    def cross_entropy(x: torch.Tensor) -> float:
        nll = -torch.log_softmax(x, dim=-1).gather(-1, targets.clamp(max=x.shape[-1] - 1)[..., None])[..., 0]
        return nll[known].mean().item()

    ce_ref, ce_low = cross_entropy(guided["ref"]), cross_entropy(guided["low"])
    return {"guided": same.float().mean().item(), "conditional": conditional.float().mean().item(),
            "positions": same.numel(), "max_gap": gap[~same].max().item() if (~same).any() else 0.0,
            "ce_change": (ce_low - ce_ref) / ce_ref}


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
        models = {}
    else:  # the LM loaded in the variant's dtype, as one would deploy it
        name = next(n for n in VARIANTS if short(n) == variant.split()[-1])
        options = {"quantize": "int8"} if name == "int8" else {"dtype": DTYPES[name]}
        oracle, models = None, {name: MusicGen.from_pretrained(folder, device=device, **options)}
    loaded = peak_rss_mib()
    runners = Runners(oracle, models, args)
    with torch.inference_mode():
        runners.variants()[variant]()
    peak = peak_rss_mib()
    print(f"PEAK {loaded:.0f} {peak:.0f}")


def peak_memory(folder: str, variant: str, args: argparse.Namespace) -> tuple[float, float]:
    command = [sys.executable, __file__, "--child", variant, "--folder", folder, "--threads", str(args.threads),
               "--device", args.device, "--seconds", str(args.seconds), "--variants", ",".join(args.variants)]
    command += ["--cuda-graph"] if args.cuda_graph else []
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    loaded, peak = next(line for line in out.splitlines() if line.startswith("PEAK")).split()[1:]
    return float(loaded), float(peak)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small", help="published LM shape")
    parser.add_argument("--seconds", type=float, default=1.0, help="audio per generation (50 frames per second)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each variant (median)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the policy of threads.py)")
    parser.add_argument("--variants", type=lambda s: s.split(","), default=["float32", "bfloat16", "int8"],
                        help=f"our LM variants, comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cuda-graph", action="store_true", help="record the one-step pass in a CUDA graph")
    parser.add_argument("--baseline", metavar="REV", help="also time this commit's decoding path (e.g. 95037c9)")
    parser.add_argument("--top-k", type=int, default=250)
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--agreement-steps", type=int, default=78, help="teacher-forced steps (x K positions)")
    parser.add_argument("--batch", type=int, default=8, help="prompts of the batch rows (0: no batch rows)")
    parser.add_argument("--batch-repeats", type=int, default=2, help="timed rounds of the batch rows")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-variant peak-memory subprocesses")
    parser.add_argument("--no-transformers", action="store_true",
                        help="do not time transformers (long runs); speed-ups are then against the first variant")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.child:
        return child_peak_memory(args.folder, args.child, args)
    policy = threads.apply_threads(args.threads)
    args.threads = torch.get_num_threads()  # the children run with the same count
    device = torch.device(args.device)
    print(f"settings: {vars(args)}; threads {policy}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}, "
          f"device {device}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"load average {os.getloadavg()[0]:.1f}")

    with tempfile.TemporaryDirectory() as folder:
        oracle = random_musicgen(args.shape)
        oracle.save_pretrained(folder)
        word_tokenizer().save_pretrained(folder)
        oracle = oracle.to(device)
        reference = MusicGen.from_pretrained(folder, device=device, dtype=torch.float32)
        start = time.perf_counter()
        models = {name: MusicGen(transformed(reference.lm, name), reference.codec, reference.text,
                                 cuda_graph=args.cuda_graph)
                  for name in args.variants if name != "float32"}
        print(f"LM transforms ({', '.join(models)}): {time.perf_counter() - start:.1f}s, once")
        models = {"float32": reference, **models} if "float32" in args.variants else models
        baseline = load_baseline(args.baseline, reference.lm, args.variants) if args.baseline else None
        runners = Runners(None if args.no_transformers else oracle, models, args, baseline)

        frames = min(runners.frames, 50)
        print(f"greedy codes (CFG {args.cfg}, {frames} frames), ours float32 == transformers: "
              f"{greedy_equal(Runners(oracle, {'float32': reference}, args), frames)}")
        for name, mg in models.items():
            if name != "float32":
                agree = top1_agreement(reference, mg.lm, args.agreement_steps, args.cfg)
                print(f"{name} teacher-forced top-1 agreement with float32 over {agree['positions']} positions: "
                      f"{agree['guided']:.1%} on CFG-guided logits (disagreements within {agree['max_gap']:.3f} "
                      f"of float32's top logit), {agree['conditional']:.1%} on conditional logits; "
                      f"cross-entropy of the sampled tokens {agree['ce_change']:+.2%}")

        print(f"timing {runners.frames} frames ({runners.frames + 3} pattern steps), 1 prompt, CFG {args.cfg}, "
              f"top-k {args.top_k}, {args.repeats} alternating rounds:")
        variants = runners.variants()
        short_args = copy.copy(args)
        short_args.seconds = min(args.seconds, 1.0)  # the warm-up round: every kernel and buffer once
        warmup = Runners(runners.oracle, models, short_args, baseline).variants()
        times, cpu_times, bandwidths = time_alternating(variants, args.repeats, device, warmup)
        steps = runners.frames + 3
        batch_times = {}
        if args.batch > 1:
            print(f"timing batches of {args.batch} prompts, {args.batch_repeats} alternating rounds:")
            batch_runners = Runners(oracle, models, args, batch=args.batch)
            batch_times, _, _ = time_alternating(batch_runners.variants(), args.batch_repeats, device)
        memory = {} if args.no_memory else {name: peak_memory(folder, name, args) for name in variants
                                            if not name.startswith(baseline[0] if baseline else "-")
                                            and name.split()[-1] not in CANDIDATES}  # not loadable

    bandwidth = statistics.median(bandwidths)
    base = times.get("transformers fp32", next(iter(times.values())))  # --no-transformers: the first variant
    cpu_base = cpu_times.get("transformers fp32", next(iter(cpu_times.values())))
    print(f"\nmemory bandwidth (sum of 2 GiB, {torch.get_num_threads()} threads, median of the rounds): "
          f"{bandwidth / 1e9:.1f} GB/s (rounds: {min(bandwidths) / 1e9:.1f} to {max(bandwidths) / 1e9:.1f})")
    print(f"{'variant':22}{'median s':>9}{'steps/s':>9}{'x real time':>12}{'speed-up':>9}{'per round':>20}"
          f"{'bytes/step':>12}{'limit steps/s':>14}{'RSS load/peak MiB':>19}{'steps/CPU s':>12}{'CPU speed-up':>13}")
    for name, samples in times.items():
        seconds = statistics.median(samples)
        ratios = sorted(b / t for b, t in zip(base, samples, strict=True))
        key = next(n for n in VARIANTS if short(n) == name.split()[-1])
        lm = models[key].lm if key in models else reference.lm  # transformers: float32's bytes
        weights, cache = bytes_per_step(lm, steps, 2 if args.cfg > 1 else 1)
        limit = bandwidth / (weights + cache)
        rss = "{:.0f} / {:.0f}".format(*memory[name]) if name in memory else "-"
        cpu = statistics.median(cpu_times[name])
        cpu_ratio = statistics.median(b / t for b, t in zip(cpu_base, cpu_times[name], strict=True))
        print(f"{name:22}{seconds:9.2f}{steps / seconds:9.1f}{runners.frames / 50 / seconds:12.2f}"
              f"{statistics.median(ratios):8.2f}x{ratios[0]:9.2f}-{ratios[-1]:.2f}x"
              f"{(weights + cache) / 1e9:10.2f}GB{limit:14.1f}{rss:>19}{steps / cpu:12.1f}{cpu_ratio:12.2f}x")
    hf_steps = steps / statistics.median(base)
    for name, mg in models.items() if "transformers fp32" in times else ():
        weights, cache = bytes_per_step(mg.lm, steps, 2 if args.cfg > 1 else 1)
        print(f"bandwidth ceiling of a {name} step against transformers' measured speed: "
              f"{bandwidth / (weights + cache) / hf_steps:.2f}x")
    if batch_times:
        print(f"\nbatches of {args.batch} prompts ({runners.frames / 50:g} s each):")
        base = batch_times["transformers fp32"]
        for name, samples in batch_times.items():
            ratios = [b / t for b, t in zip(base, samples, strict=True)]
            print(f"{name:22}{args.batch / statistics.median(samples):7.2f} clips/s"
                  f"{args.batch * runners.frames / 50 / statistics.median(samples):8.2f} x real time"
                  f"{statistics.median(ratios):8.2f}x transformers")
    print("speed-up: median over rounds of (transformers fp32 time / variant time) in the same round, end to end; "
          "per round: its range.\nlimit: bandwidth / bytes per step (weights + mean KV cache), the ceiling of "
          "the decode steps.\nRSS: peak resident set (VmHWM) of a fresh process after loading the checkpoint, and "
          "after one generation.\nsteps/CPU s: pattern steps per second of this process's CPU time (all threads), and "
          "its ratio to transformers'; with one thread on a shared machine, closer to an idle machine's speed.")


if __name__ == "__main__":
    main()

"""Quality of the LM speed transforms against float32: teacher-forced top-1 agreement and cross-entropy.

    python bench/int8_quality.py [--model checkpoints/demo] [--clips 10] [--seconds 8] [--seed 12345]
    python bench/int8_quality.py --shape small [--clips 4] [--seconds 5]     # random weights, published shape
    [--variants float32,bfloat16,int8,int8-heads,int8-bf16,int4-g32,int4-g64]

Held-out tokens: `--clips` corpus clips rendered with a seed the demo model never trained on (corpus seed 0),
one per style (corpus/render.py), encoded by the model's own codec, each with its caption. With `--shape`,
random weights of a published LM shape (bench/generation.py's `random_musicgen`: transformers' initialisation)
instead, and as tokens what its float32 self samples (CFG 3, top-k 250) for `--clips` prompts. Every variant
of the LM (inference/speed.py, and the candidates of bench/candidates.py) reads the same tokens teacher-forced
(one full forward over the delay pattern) and is compared with float32 on every frame each codebook predicts:

- top-1 agreement with float32, on the conditional logits and on the CFG-guided logits (CFG 3, what is
  sampled from);
- the validation cross-entropy of the true tokens (nats, conditional logits, lm/losses.py) and its change;
- the per-codebook top-1 accuracy against the true tokens;
- greedy codes of a short clip (CFG 3, from the first caption): the fraction equal to float32's, and the first
  frame where they differ (after one different token the two continuations go their own ways).

The quality bar of a default path (issue 22): top-1 agreement >= 95% and cross-entropy +1% at most; the last
column says whether a variant meets it (agreement on the conditional and on the CFG-guided logits).
"""

import argparse
import copy
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.candidates import quantize_int4, quantize_int8_bf16_stream, quantize_int8_dynamic, quantize_int8_heads  # noqa: E402
from corpus.render import Synthesizer, default_soundfont, make_clip  # noqa: E402
from corpus.styles import STYLES  # noqa: E402
from inference import MusicGen  # noqa: E402
from inference.generation import generate_window  # noqa: E402
from inference.speed import prepare_for_inference, quantize_int8  # noqa: E402
from lm.losses import delayed_cross_entropy, teacher_forcing_inputs  # noqa: E402
from lm.model import MusicGenLM  # noqa: E402
from lm.patterns import revert_delay_logits  # noqa: E402
from lm.sampling import SamplingParams, classifier_free_guidance  # noqa: E402
from training.demo.recipe import FLUID_R3  # noqa: E402

VARIANTS = {"float32": lambda lm: lm, "bfloat16": lambda lm: prepare_for_inference(copy.deepcopy(lm), torch.bfloat16),
            "int8": lambda lm: quantize_int8(copy.deepcopy(lm)),
            "int8-heads": lambda lm: quantize_int8_heads(copy.deepcopy(lm)),
            "int8-bf16": lambda lm: quantize_int8_bf16_stream(copy.deepcopy(lm)),
            "int4-g32": lambda lm: quantize_int4(copy.deepcopy(lm), 32),
            "int4-g64": lambda lm: quantize_int4(copy.deepcopy(lm), 64),
            "int8-dyn": lambda lm: quantize_int8_dynamic(copy.deepcopy(lm))}
PROMPTS = ["80s pop track with bassy drums and synth", "an uplifting jazz song", "calm piano", "lo-fi funk"]
BAR = (0.95, 0.01)  # top-1 agreement at least, cross-entropy change at most


def held_out(mg: MusicGen, clips: int, seconds: float, seed: int, soundfont: str, reverb: bool
             ) -> tuple[torch.Tensor, list[str]]:
    """Codes [B, K, T] and captions of `clips` rendered corpus clips (one per style, cycling)."""
    synth = Synthesizer(sf_path=soundfont, sample_rate=max(32000, mg.sample_rate))
    rendered = [make_clip(STYLES[i % len(STYLES)], i, seed, seconds, mg.sample_rate, synth, reverb)
                for i in range(clips)]
    wav = torch.stack([torch.as_tensor(c.audio, dtype=torch.float32)[None] for c in rendered])  # [B, 1, N]
    with torch.no_grad():
        codes = mg.codec.encode(wav)  # [B, K, T]
    return codes, [c.caption for c in rendered]


@torch.no_grad()
def sampled(mg: MusicGen, clips: int, seconds: float, cfg: float) -> tuple[torch.Tensor, list[str]]:
    """Codes [B, K, T] that float32 `mg` samples (top-k 250, CFG `cfg`, seed 0) for `clips` prompts, and them."""
    captions = [PROMPTS[i % len(PROMPTS)] for i in range(clips)]
    cond = mg._condition(captions, with_null=True)
    prompt = torch.zeros(clips, mg.lm.config.num_codebooks, 0, dtype=torch.long)
    codes = generate_window(mg.lm, cond, prompt, round(seconds * mg.frame_rate), sampling=SamplingParams(
        cfg_coef=cfg), generator=torch.Generator().manual_seed(0))
    return codes, captions


@torch.no_grad()
def teacher_forced(lm: MusicGenLM, mg: MusicGen, codes: torch.Tensor, captions: list[str], cfg: float) -> dict:
    """Conditional and guided logits aligned to frames [B, K, T, V], the frame mask [K, T], and the loss."""
    inputs = teacher_forcing_inputs(codes, lm.config.delays, lm.config.special_token)  # [B, K, T + 1]
    cond = mg._condition(captions, with_null=True)  # [2B, L, D]
    logits = lm(torch.cat([inputs, inputs]), cond).float()  # [2B, K, T + 1, V]
    conditional, _ = logits.chunk(2)
    guided = classifier_free_guidance(logits, cfg)
    aligned, mask = revert_delay_logits(conditional, lm.config.delays, num_frames=codes.shape[-1])
    aligned_guided, _ = revert_delay_logits(guided, lm.config.delays, num_frames=codes.shape[-1])
    loss = delayed_cross_entropy(conditional, codes, lm.config.delays)
    return {"conditional": aligned, "guided": aligned_guided, "mask": mask, "loss": loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="checkpoints/demo")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=12345, help="corpus seed (the demo trained on seed 0)")
    parser.add_argument("--soundfont", default=str(FLUID_R3) if FLUID_R3.is_file() else str(default_soundfont()),
                        help="the corpus's SoundFont (default: FluidR3_GM when installed, as the demo's corpus)")
    parser.add_argument("--reverb", action=argparse.BooleanOptionalAction, default=True,
                        help="clips in drawn rooms, as the demo's corpus")
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--greedy-seconds", type=float, default=2.0, help="0: no greedy clip")
    parser.add_argument("--shape", choices=("small", "medium", "large"),
                        help="random weights of this published LM shape instead of --model")
    parser.add_argument("--variants", type=lambda s: s.split(","), default=["float32", "bfloat16", "int8"],
                        help=f"comma-separated, float32 first: {', '.join(VARIANTS)}")
    args = parser.parse_args()
    print(f"settings: {vars(args)}; torch {torch.__version__}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.shape:
        with tempfile.TemporaryDirectory() as folder:
            from bench.generation import random_musicgen
            from tests.musicgen_oracle import word_tokenizer

            random_musicgen(args.shape).save_pretrained(folder)
            word_tokenizer().save_pretrained(folder)
            mg = MusicGen.from_pretrained(folder, device="cpu", quantize=None)
        codes, captions = sampled(mg, args.clips, args.seconds, args.cfg)
    else:
        mg = MusicGen.from_pretrained(args.model, device="cpu", quantize=None)
        codes, captions = held_out(mg, args.clips, args.seconds, args.seed, args.soundfont, args.reverb)
    models = {name: VARIANTS[name](mg.lm) for name in args.variants}
    results = {name: teacher_forced(lm, mg, codes, captions, args.cfg) for name, lm in models.items()}
    reference = results["float32"]
    mask = reference["mask"]  # [K, T]
    positions = int(mask.sum()) * codes.shape[0]
    frames = round(args.greedy_seconds * mg.frame_rate)
    cond = mg._condition(captions[:1], with_null=True)
    prompt = codes[:1, :, :0]
    greedy = {name: generate_window(lm, cond, prompt, frames, sampling=SamplingParams(use_sampling=False,
                                                                                     cfg_coef=args.cfg))
              for name, lm in models.items()} if frames else {}
    source = f"random {args.shape} weights, tokens sampled by float32" if args.shape else "held-out clips"
    print(f"{codes.shape[0]} {source} x {args.seconds:g} s, {positions} teacher-forced positions "
          f"(frames x codebooks), greedy clip of {frames} frames")
    print(f"{'variant':12}{'top-1 = fp32':>14}{'guided = fp32':>15}{'val. CE':>9}{'CE change':>11}"
          f"{'accuracy per codebook':>30}{'greedy = fp32':>15}{'first diff':>12}{'meets the bar':>15}")
    for name, result in results.items():
        same = {kind: (result[kind].argmax(-1) == reference[kind].argmax(-1))[:, mask].float().mean().item()
                for kind in ("conditional", "guided")}
        loss, base = result["loss"].loss.item(), reference["loss"].loss.item()
        accuracy = " ".join(f"{a:.3f}" for a in result["loss"].accuracy.tolist())
        equal, first = greedy_match(greedy, name)
        meets = min(same.values()) >= BAR[0] and (loss - base) / base <= BAR[1]
        print(f"{name:12}{same['conditional']:14.1%}{same['guided']:15.1%}{loss:9.4f}{(loss - base) / base:+11.2%}"
              f"{accuracy:>30}{equal:>15}{first:>12}{'yes' if meets else 'no':>15}", flush=True)


def greedy_match(greedy: dict[str, torch.Tensor], name: str) -> tuple[str, str]:
    """The fraction of `name`'s greedy codes equal to float32's, and the first frame where they differ."""
    if not greedy:
        return "-", "-"
    equal = greedy[name] == greedy["float32"]  # [1, K, frames]
    differ = (~equal.all(dim=1)[0]).nonzero()
    return f"{equal.float().mean().item():.1%}", f"frame {int(differ[0])}" if len(differ) else "none"


if __name__ == "__main__":
    main()

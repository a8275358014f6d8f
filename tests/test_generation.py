"""The one decoding loop (inference/generation.py) against transformers, and the speed transforms of the one LM."""

import copy

import pytest
import torch

import inference.generation as generation
import inference.speed as speed
from inference import MusicGen
from inference.audio_prompt import prepare_prompt
from inference.cuda_graph import StaticStep
from inference.generation import generate_window, last_logits
from inference.speed import FUSED_ROWS, CastLinear, Int8Linear, compute_dtype, prepare_for_inference, quantize_int8
from lm.sampling import SamplingParams
from tests.musicgen_oracle import (
    CARD,
    hf_generate_codes,
    save_tiny_melody_musicgen,
    save_tiny_musicgen,
)

FRAMES = 12
GREEDY = SamplingParams(use_sampling=False)


@pytest.fixture(scope="module", params=["mono", "stereo"])
def checkpoint(request, tmp_path_factory):
    oracle, folder = save_tiny_musicgen(tmp_path_factory.mktemp(request.param), stereo=request.param == "stereo")
    return oracle, MusicGen.from_pretrained(folder, device="cpu", quantize=None)


def _inputs(ours: MusicGen, prompts: list[str], cfg: float, prompt_frames: int = 0):
    cond = ours._condition(prompts, with_null=cfg > 1)
    generator = torch.Generator().manual_seed(3)
    prompt = torch.randint(0, CARD, (len(prompts), ours.lm.config.num_codebooks, prompt_frames), generator=generator)
    return cond, prompt


def _teacher_forced(lm, cond, codes):
    """Logits of every step of the delayed sequence of codes, one full forward (no cache)."""
    sequence = generation.build_delay_pattern(codes, lm.config.delays, lm.config.special_token)
    inputs = torch.cat([sequence, sequence]) if cond.shape[0] == 2 * codes.shape[0] else sequence
    return lm(inputs, cond)  # [B(x2), K, S, V]


@pytest.mark.parametrize("cfg", [1.0, 3.0], ids=["no-cfg", "cfg3"])
@pytest.mark.parametrize("prompts", [["an uplifting jazz song"], ["lo-fi funk", "80s pop", "jazz song"]],
                         ids=["one", "batch"])
def test_greedy_codes_equal_transformers(checkpoint, prompts, cfg):
    oracle, ours = checkpoint
    cond, prompt = _inputs(ours, prompts, cfg)
    codes = generate_window(ours.lm, cond, prompt, FRAMES, sampling=SamplingParams(use_sampling=False, cfg_coef=cfg))
    assert codes.shape == (len(prompts), ours.lm.config.num_codebooks, FRAMES)
    want, _ = hf_generate_codes(oracle, prompts, FRAMES, guidance_scale=cfg if cfg > 1 else None)
    assert torch.equal(codes, want)
    assert len(codes.unique()) > 5


def test_cached_decoding_equals_a_full_forward_at_every_step(checkpoint):
    """Each step's logits (prefill of a prompt, then one step at a time through the cache) equal the full forward's."""
    _, ours = checkpoint
    lm = ours.lm
    cond, prompt = _inputs(ours, ["lo-fi funk", "jazz song"], 3.0, prompt_frames=4)
    codes = generate_window(lm, cond, prompt, FRAMES, sampling=GREEDY)
    sequence = generation.build_delay_pattern(codes, lm.config.delays, lm.config.special_token)
    doubled = torch.cat([sequence, sequence])
    with torch.no_grad():
        full = _teacher_forced(lm, cond, codes)  # [2B, K, S, V]
        cache = lm.new_cache(sequence.shape[-1])
        steps = [last_logits(lm, doubled[..., :5], cond, cache)]
        steps += [last_logits(lm, doubled[..., s : s + 1], None, cache) for s in range(5, sequence.shape[-1] - 1)]
    torch.testing.assert_close(torch.stack(steps, dim=2), full[:, :, 4:-1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cfg", [1.0, 3.0], ids=["no-cfg", "cfg3"])
def test_audio_prompt_continuation_equals_transformers(checkpoint, cfg):
    oracle, ours = checkpoint
    torch.manual_seed(0)
    wav = torch.randn(2, ours.audio_channels, 96) * 0.3  # 6 frames at 800 Hz, 16 samples per frame
    descriptions = ["lo-fi funk", "jazz song"]
    want, _ = hf_generate_codes(oracle, descriptions, FRAMES, cfg if cfg > 1 else None, wav)
    prompt = prepare_prompt(ours.codec, ours.audio_channels, wav, 800)  # [2, K, 6]
    cond = ours._condition(descriptions, with_null=cfg > 1)
    codes = generate_window(ours.lm, cond, prompt, FRAMES, sampling=SamplingParams(use_sampling=False, cfg_coef=cfg))
    assert torch.equal(codes[..., :6], prompt)
    assert torch.equal(codes, want)


def test_seeded_sampling_is_reproducible(checkpoint):
    _, ours = checkpoint
    cond, prompt = _inputs(ours, ["lo-fi funk", "jazz song"], 3.0, prompt_frames=2)

    def run(sampling, seed):
        return generate_window(ours.lm, cond, prompt, FRAMES, sampling=sampling,
                               generator=torch.Generator().manual_seed(seed))

    top_k = SamplingParams(top_k=20)
    first = run(top_k, 7)
    assert torch.equal(first, run(top_k, 7))
    assert not torch.equal(first, run(top_k, 8))
    assert torch.equal(run(SamplingParams(top_p=0.9), 1), run(SamplingParams(top_p=0.9), 1))


def test_static_step_equals_the_eager_step(checkpoint):
    """The step a CUDA graph records (static cache: index_copy_, masked attention over the whole buffer) runs
    eagerly on CPU with the same logits as the eager one-step pass."""
    _, ours = checkpoint
    lm = ours.lm
    cond, prompt = _inputs(ours, ["lo-fi funk", "jazz song"], 3.0, prompt_frames=3)
    codes = generate_window(lm, cond, prompt, FRAMES, sampling=GREEDY)
    sequence = torch.cat([generation.build_delay_pattern(codes, lm.config.delays, lm.config.special_token)] * 2)
    S = sequence.shape[-1]
    with torch.no_grad():
        eager, static = lm.new_cache(S), lm.new_cache(S)
        for cache in (eager, static):
            last_logits(lm, sequence[..., :4], cond, cache)
        step = StaticStep(lambda steps: last_logits(lm, steps, None, static), static, sequence[..., :1], record=False)
        for s in range(4, S - 1):
            want = last_logits(lm, sequence[..., s : s + 1], None, eager)
            torch.testing.assert_close(step(sequence[..., s : s + 1], s), want, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="CUDA"):
        StaticStep(lambda steps: steps, static, sequence[..., :1], record=True)


def test_cuda_graph_needs_cuda(checkpoint):
    _, ours = checkpoint
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        MusicGen(ours.lm, ours.codec, ours.text, cuda_graph=True)


def test_on_step_is_called_once_per_pass(checkpoint):
    _, ours = checkpoint
    cond, prompt = _inputs(ours, ["jazz song"], 3.0, prompt_frames=4)
    calls = []
    generate_window(ours.lm, cond, prompt, FRAMES, sampling=GREEDY, on_step=lambda: calls.append(1))
    assert len(calls) == FRAMES + max(ours.lm.config.delays) - 4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_is_a_transform_of_the_one_model(checkpoint, dtype):
    _, ours = checkpoint
    lm = prepare_for_inference(copy.deepcopy(ours.lm), dtype)
    layer = lm.transformer.layers[0]
    assert isinstance(layer.self_attn.q_proj, CastLinear) and layer.linear1.weight.dtype == dtype
    assert compute_dtype(lm) == dtype and compute_dtype(ours.lm) == torch.float32
    assert lm.heads[0].weight.dtype == lm.out_norm.weight.dtype == torch.float32  # heads, norms stay float32
    cond, prompt = _inputs(ours, ["lo-fi funk", "jazz song"], 3.0, prompt_frames=3)
    with torch.no_grad():
        cache = lm.new_cache(8)
        logits = last_logits(lm, torch.full((4, ours.lm.config.num_codebooks, 4), CARD), cond, cache)
    assert cache.layers[0].keys.dtype == dtype  # the cache follows the compute dtype
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    codes = generate_window(lm, cond, prompt, FRAMES, sampling=GREEDY)
    reference = generate_window(ours.lm, cond, prompt, FRAMES, sampling=GREEDY)
    assert codes.min() >= 0 and codes.max() < CARD
    assert (codes == reference).float().mean() > 0.8  # greedy choices of this tiny model are well separated


def test_from_pretrained_applies_the_dtype_as_a_transform(checkpoint, tmp_path):
    _, folder = save_tiny_musicgen(tmp_path)
    mg = MusicGen.from_pretrained(folder, device="cpu", dtype=torch.bfloat16)
    assert compute_dtype(mg.lm) == torch.bfloat16 and mg.lm.out_norm.weight.dtype == torch.float32
    audio = mg.generate(["jazz song"], duration=0.2, seed=0)
    assert torch.isfinite(audio).all()


def test_pipeline_sliding_windows_equal_window_by_window(checkpoint):
    _, ours = checkpoint
    ours.max_duration, ours.extend_stride = 0.2, 0.12  # 10-frame windows, 6 new frames each
    try:
        got = ours.generate_tokens(["jazz song", "lo-fi funk"], duration=0.5, use_sampling=False)
    finally:
        ours.max_duration, ours.extend_stride = 30.0, 18.0
    assert got.shape[-1] == 25
    cond = ours._condition(["jazz song", "lo-fi funk"], with_null=True)
    first = generate_window(ours.lm, cond, got[..., :0], 10, sampling=GREEDY)
    assert torch.equal(got[..., :10], first)
    second = generate_window(ours.lm, cond, got[..., 6:10], 10, sampling=GREEDY)
    assert torch.equal(got[..., 6:16], second)


@pytest.mark.parametrize("cfg", [1.0, 3.0], ids=["no-cfg", "cfg3"])
def test_melody_model_prepended_condition_equals_a_full_forward(tmp_path, cfg):
    _, folder = save_tiny_melody_musicgen(tmp_path, chroma_length=20)
    ours = MusicGen.from_pretrained(folder, device="cpu", quantize=None)
    chroma = torch.nn.functional.one_hot(torch.randint(0, 12, (2, 20), generator=torch.Generator().manual_seed(2)),
                                         12).float()
    cond = ours._condition(["80s pop", "jazz song"], with_null=cfg > 1, chroma=list(chroma))
    prompt = torch.zeros(2, 4, 0, dtype=torch.long)
    params = SamplingParams(use_sampling=False, cfg_coef=cfg)
    codes = generate_window(ours.lm, cond, prompt, 10, sampling=params)
    with torch.no_grad():
        logits = _teacher_forced(ours.lm, cond, codes)  # [B(x2), K, S, V], no cache
    if cfg > 1:
        logits = generation.classifier_free_guidance(logits, cfg)  # [B, K, S, V]
    sequence = generation.build_delay_pattern(codes, ours.lm.config.delays, ours.lm.config.special_token)
    generated = sequence[..., 1:] != ours.lm.config.special_token  # [B, K, S - 1]
    assert torch.equal(logits.argmax(-1)[..., :-1][generated], sequence[..., 1:][generated])  # step s -> s + 1


def test_int8_linear_known_values():
    """Per-channel absmax scales: a row of [-2, 1] stores [-127, 64] with scale 2/127."""
    weight = torch.tensor([[-2.0, 1.0], [0.5, 0.25]])
    layer = Int8Linear(weight, torch.bfloat16)
    assert layer.weight.dtype == torch.int8 and torch.equal(layer.weight, torch.tensor([[-127, 64], [127, 64]],
                                                                                       dtype=torch.int8))
    torch.testing.assert_close(layer.scale.float(), torch.tensor([2 / 127, 0.5 / 127]), rtol=1e-2, atol=0)
    x = torch.randn(3, 2)
    torch.testing.assert_close(layer(x).float(), x @ weight.t(), rtol=0.02, atol=0.02)  # dequantized: D_in = 2


@pytest.mark.parametrize("width", [16, 24, 64])
def test_int8_linear_is_right_for_every_input_width(width):
    """The fused CPU kernel needs D_in % 16 == 0 (24 gave wrong sums): other widths must not reach it."""
    weight = torch.randn(40, width, generator=torch.Generator().manual_seed(width))
    x = torch.randn(2, 5, width, generator=torch.Generator().manual_seed(1))
    got = Int8Linear(weight, torch.bfloat16)(x).float()
    want = x @ weight.t()
    assert got.shape == (2, 5, 40)
    assert ((got - want).norm() / want.norm()) < 0.02


def test_int8_linear_fused_and_dequantized_products_agree(monkeypatch):
    """Up to FUSED_ROWS rows go through the fused CPU kernel, more are dequantized (with AMX, which this test
    pretends to have): the same sums either way."""
    monkeypatch.setattr(speed, "AMX", True)
    weight = torch.randn(48, 128, generator=torch.Generator().manual_seed(0))
    layer = Int8Linear(weight, torch.bfloat16)
    x = torch.randn(4 * FUSED_ROWS, 128, generator=torch.Generator().manual_seed(1))
    many = layer(x).float()  # dequantized
    few = torch.cat([layer(rows).float() for rows in x.split(FUSED_ROWS)])  # the fused kernel
    exact = x.bfloat16().float() @ (layer.weight.float() * layer.scale.float()[:, None]).t()
    for got in (many, few):
        assert ((got - exact).norm() / exact.norm()) < 5e-3  # bfloat16 rounding of the outputs
    assert ((many - few).norm() / exact.norm()) < 5e-3


def test_int8_is_a_transform_of_the_one_model_and_agrees_with_float32(checkpoint):
    _, ours = checkpoint
    lm = quantize_int8(copy.deepcopy(ours.lm))
    layer = lm.transformer.layers[0]
    assert isinstance(layer.linear1, Int8Linear) and layer.self_attn.q_proj.weight.dtype == torch.int8
    assert compute_dtype(lm) == torch.bfloat16 and lm.heads[0].weight.dtype == torch.float32
    cond, prompt = _inputs(ours, ["lo-fi funk", "jazz song"], 3.0, prompt_frames=3)
    codes = generate_window(lm, cond, prompt, FRAMES, sampling=GREEDY)
    with torch.no_grad():  # teacher-forced on float32's greedy codes: the same choices at nearly every step
        reference = generate_window(ours.lm, cond, prompt, FRAMES, sampling=GREEDY)
        want, got = (_teacher_forced(model, cond, reference).argmax(-1) for model in (ours.lm, lm))
    assert (got == want).float().mean() > 0.9
    assert (codes == reference).float().mean() > 0.8


def test_from_pretrained_int8_and_what_it_refuses(tmp_path):
    _, folder = save_tiny_musicgen(tmp_path)
    mg = MusicGen.from_pretrained(folder, device="cpu", quantize="int8")
    assert isinstance(mg.lm.transformer.layers[0].linear2, Int8Linear)
    assert torch.isfinite(mg.generate(["jazz song"], duration=0.2, seed=0)).all()
    options = {"default": {}, "none": {"quantize": None}, "bf16": {"dtype": torch.bfloat16}}
    layer = {name: MusicGen.from_pretrained(folder, device="cpu", **kwargs).lm.transformer.layers[0].linear2
             for name, kwargs in options.items()}
    assert isinstance(layer["default"], Int8Linear)  # the CPU's default: int8 unless a dtype is asked for
    assert isinstance(layer["none"], torch.nn.Linear) and isinstance(layer["bf16"], CastLinear)
    with pytest.raises(ValueError, match="quantize must be None, 'auto' or 'int8'"):
        MusicGen.from_pretrained(folder, device="cpu", quantize="int4")
    with pytest.raises(ValueError, match="bfloat16 or float16 activations"):
        MusicGen.from_pretrained(folder, device="cpu", quantize="int8", dtype=torch.float32)


def test_int8_without_a_kernel_is_one_clear_error(checkpoint, monkeypatch):
    _, ours = checkpoint

    def no_kernel(*args):
        raise RuntimeError("_weight_int8pack_mm: not implemented for this CPU\nlong trace")

    monkeypatch.setattr(torch.ops.aten, "_weight_int8pack_mm", no_kernel)
    with pytest.raises(ValueError, match="int8 decoding has no kernel on cpu.*not implemented for this CPU$"):
        quantize_int8(copy.deepcopy(ours.lm))

"""The fast decoding path (inference/fast.py) against the reference loop and transformers, on tiny checkpoints."""

import copy

import pytest
import torch

import inference.generation as generation
from inference import MusicGen
from inference.audio_prompt import prepare_prompt
from inference.fast import fast_lm, generate_window_fast
from inference.generation import SamplingParams, generate_window
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
    return oracle, MusicGen.from_pretrained(folder, device="cpu")


def _inputs(ours: MusicGen, prompts: list[str], cfg: float, prompt_frames: int = 0):
    cond = ours._condition(prompts, with_null=cfg > 1)
    generator = torch.Generator().manual_seed(3)
    prompt = torch.randint(0, CARD, (len(prompts), ours.lm.config.num_codebooks, prompt_frames), generator=generator)
    return cond, prompt


@pytest.mark.parametrize("cfg", [1.0, 3.0], ids=["no-cfg", "cfg3"])
@pytest.mark.parametrize("prompts", [["an uplifting jazz song"], ["lo-fi funk", "80s pop", "jazz song"]],
                         ids=["one", "batch"])
def test_greedy_codes_equal_reference_and_transformers(checkpoint, prompts, cfg):
    oracle, ours = checkpoint
    params = SamplingParams(use_sampling=False, cfg_coef=cfg)
    cond, prompt = _inputs(ours, prompts, cfg)
    fast = generate_window_fast(ours.lm, cond, prompt, FRAMES, params)
    assert fast.shape == (len(prompts), ours.lm.config.num_codebooks, FRAMES)
    assert torch.equal(fast, generate_window(ours.lm, cond, prompt, FRAMES, params))
    want, _ = hf_generate_codes(oracle, prompts, FRAMES, guidance_scale=cfg if cfg > 1 else None)
    assert torch.equal(fast, want)
    assert len(fast.unique()) > 5


@pytest.mark.parametrize("cfg", [1.0, 3.0], ids=["no-cfg", "cfg3"])
def test_continuation_of_prompt_codes_equals_reference(checkpoint, cfg):
    _, ours = checkpoint
    params = SamplingParams(use_sampling=False, cfg_coef=cfg)
    cond, prompt = _inputs(ours, ["lo-fi funk", "jazz song"], cfg, prompt_frames=5)
    fast = generate_window_fast(ours.lm, cond, prompt, FRAMES, params)
    assert torch.equal(fast[..., :5], prompt)
    assert torch.equal(fast, generate_window(ours.lm, cond, prompt, FRAMES, params))


@pytest.mark.parametrize("cfg", [1.0, 3.0], ids=["no-cfg", "cfg3"])
def test_audio_prompt_continuation_equals_transformers(checkpoint, cfg):
    oracle, ours = checkpoint
    torch.manual_seed(0)
    wav = torch.randn(2, ours.audio_channels, 96) * 0.3  # 6 frames at 800 Hz, 16 samples per frame
    descriptions = ["lo-fi funk", "jazz song"]
    want, _ = hf_generate_codes(oracle, descriptions, FRAMES, cfg if cfg > 1 else None, wav)
    prompt = prepare_prompt(ours.codec, ours.audio_channels, wav, 800)  # [2, K, 6]
    cond = ours._condition(descriptions, with_null=cfg > 1)
    fast = generate_window_fast(ours.lm, cond, prompt, FRAMES, SamplingParams(use_sampling=False, cfg_coef=cfg))
    assert torch.equal(fast, want)


def test_seeded_sampling_is_reproducible_and_draws_as_the_reference(checkpoint):
    _, ours = checkpoint
    params = SamplingParams(top_k=20, cfg_coef=3.0)
    cond, prompt = _inputs(ours, ["lo-fi funk", "jazz song"], 3.0, prompt_frames=2)

    def run(fn, seed):
        return fn(ours.lm, cond, prompt, FRAMES, params, torch.Generator().manual_seed(seed))

    first = run(generate_window_fast, 7)
    assert torch.equal(first, run(generate_window_fast, 7))
    assert not torch.equal(first, run(generate_window_fast, 8))
    assert torch.equal(first, run(generate_window, 7))  # same ops, same order of draws from the generator
    nucleus = generate_window_fast(ours.lm, cond, prompt, FRAMES, SamplingParams(top_p=0.9),
                                   torch.Generator().manual_seed(1))
    assert torch.equal(nucleus, generate_window(ours.lm, cond, prompt, FRAMES, SamplingParams(top_p=0.9),
                                                torch.Generator().manual_seed(1)))


def test_static_step_for_cuda_graphs_runs_on_cpu(checkpoint):
    """compile=True is CUDA graphs; on CPU the same static-shape step (index_copy_, masked cache) runs eagerly."""
    _, ours = checkpoint
    params = SamplingParams(use_sampling=False, cfg_coef=3.0)
    cond, prompt = _inputs(ours, ["lo-fi funk", "jazz song"], 3.0, prompt_frames=3)
    with pytest.warns(UserWarning, match="CUDA graphs"):
        fast = generate_window_fast(ours.lm, cond, prompt, FRAMES, params, compile=True)
    assert torch.equal(fast, generate_window(ours.lm, cond, prompt, FRAMES, params))


def test_on_step_is_called_once_per_pass(checkpoint):
    _, ours = checkpoint
    cond, prompt = _inputs(ours, ["jazz song"], 3.0, prompt_frames=4)
    calls = []
    generate_window_fast(ours.lm, cond, prompt, FRAMES, GREEDY, on_step=lambda: calls.append(1))
    assert len(calls) == generation.window_steps(4, FRAMES, max(ours.lm.config.delays))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_runs_and_mostly_agrees_with_float32(checkpoint, dtype):
    _, ours = checkpoint
    cond, prompt = _inputs(ours, ["lo-fi funk", "jazz song"], 3.0, prompt_frames=3)
    fast = fast_lm(ours.lm, dtype)
    state = fast.new_state(cond, 8)
    assert state.keys.dtype == fast.layers[0].ffn_in.dtype == dtype and fast.heads.dtype == torch.float32
    logits = fast.prefill(state, torch.full((2, ours.lm.config.num_codebooks, 4), CARD), cond)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    codes = generate_window_fast(ours.lm, cond, prompt, FRAMES, SamplingParams(use_sampling=False), dtype=dtype)
    assert codes.shape == (2, ours.lm.config.num_codebooks, FRAMES)
    assert codes.min() >= 0 and codes.max() < CARD
    reference = generate_window_fast(ours.lm, cond, prompt, FRAMES, SamplingParams(use_sampling=False))
    assert (codes == reference).float().mean() > 0.8  # greedy choices of this tiny model are well separated


def test_model_loaded_in_bfloat16_shares_its_weights(checkpoint):
    _, ours = checkpoint
    lm = copy.deepcopy(ours.lm).to(torch.bfloat16)  # as MusicGen.from_pretrained(..., dtype=torch.bfloat16)
    fast = fast_lm(lm)
    assert fast.dtype == torch.bfloat16 and len(fast.layers[0].qkv) == 3  # the model's own q, k, v: no copy
    assert fast.layers[0].qkv[0].data_ptr() == lm.transformer.layers[0].self_attn.q_proj.weight.data_ptr()
    cond, prompt = _inputs(ours, ["lo-fi funk", "jazz song"], 3.0, prompt_frames=3)
    codes = generate_window_fast(lm, cond.to(torch.bfloat16), prompt, FRAMES, GREEDY)
    reference = generate_window_fast(ours.lm, cond, prompt, FRAMES, GREEDY)
    assert (codes == reference).float().mean() > 0.8


def test_prepared_weights_are_reused_and_refreshed(checkpoint):
    _, ours = checkpoint
    lm = ours.lm
    assert fast_lm(lm) is fast_lm(lm)
    assert fast_lm(lm).layers[0].ffn_in.data_ptr() == lm.transformer.layers[0].linear1.weight.data_ptr()  # shared
    assert fast_lm(lm, torch.bfloat16) is not fast_lm(lm)
    before = fast_lm(lm)
    with torch.no_grad():
        lm.heads[0].weight.add_(0.0)  # an in-place update (optimizer step, load_state_dict) bumps the version
    assert fast_lm(lm) is not before


def test_pipeline_uses_the_fast_loop_with_the_same_codes_over_sliding_windows(checkpoint):
    _, ours = checkpoint
    ours.max_duration, ours.extend_stride = 0.2, 0.12  # 10-frame windows, 6 new frames each
    try:
        assert ours.fast
        got = ours.generate_tokens(["jazz song", "lo-fi funk"], duration=0.5, use_sampling=False)
        ours.fast = False  # the reference loop of inference/generation.py
        want = ours.generate_tokens(["jazz song", "lo-fi funk"], duration=0.5, use_sampling=False)
        sampled = [ours.generate_tokens(["jazz song"], duration=0.5, seed=5, top_k=20)]
        ours.fast = True
        sampled.append(ours.generate_tokens(["jazz song"], duration=0.5, seed=5, top_k=20))
    finally:
        ours.max_duration, ours.extend_stride, ours.fast = 30.0, 18.0, True
    assert got.shape[-1] == 25
    assert torch.equal(got, want)
    assert torch.equal(sampled[0], sampled[1])  # the same draws from the same seed


@pytest.mark.parametrize("cfg", [1.0, 3.0], ids=["no-cfg", "cfg3"])
def test_melody_model_prepended_condition_equals_reference(tmp_path, cfg):
    _, folder = save_tiny_melody_musicgen(tmp_path, chroma_length=20)
    ours = MusicGen.from_pretrained(folder, device="cpu")
    chroma = torch.nn.functional.one_hot(torch.randint(0, 12, (2, 20), generator=torch.Generator().manual_seed(2)),
                                         12).float()
    cond = ours._condition(["80s pop", "jazz song"], with_null=cfg > 1, chroma=list(chroma))
    prompt = torch.zeros(2, 4, 0, dtype=torch.long)
    params = SamplingParams(use_sampling=False, cfg_coef=cfg)
    fast = generate_window_fast(ours.lm, cond, prompt, 10, params)
    assert torch.equal(fast, generate_window(ours.lm, cond, prompt, 10, params))

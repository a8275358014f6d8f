"""The memory plan of a generation (inference/memory.py): known sizes, and batch sizes that fit."""

from types import SimpleNamespace

import pytest
import torch

from inference.chunked import CHUNK_FRAMES, CONTEXT_FRAMES
from inference.memory import ENCODER_BYTES, MAX_BATCH, SAVE_BYTES, USABLE, plan_memory
from inference.speed import prepare_for_inference
from lm.config import LMConfig


def small_shaped(dtype: torch.dtype = torch.float32) -> SimpleNamespace:
    """A stand-in MusicGen with musicgen-small's LM config and the published codec's numbers (no weights)."""
    lm = torch.nn.Module()
    lm.config = LMConfig()  # musicgen-small: 24 layers, dim 1024, 16 heads, ffn 4096, delays 0..3
    lm.transformer = torch.nn.Module()
    lm.transformer.layers = torch.nn.ModuleList([torch.nn.Module()])
    lm.transformer.layers[0].linear1 = torch.nn.Linear(8, 8, bias=False)
    prepare_for_inference(lm, dtype)
    codec = SimpleNamespace(hop_length=640, config=SimpleNamespace(n_filters=64))
    return SimpleNamespace(lm=lm, codec=codec, max_duration=30.0, frame_rate=50.0, audio_channels=1,
                           device=torch.device("cpu"))


def test_kv_cache_of_one_window_of_musicgen_small():
    plan = plan_memory(small_shaped(), num_frames=500, guided=True, available=10**12)  # 10 s
    assert plan.kv_cache == 2 * 24 * 2 * 1024 * (500 + 3 + 1) * 4  # rows x layers x (K, V) x dim x steps x fp32
    long = plan_memory(small_shaped(), num_frames=30_000, guided=True, available=10**12)  # 10 minutes
    assert long.kv_cache == 2 * 24 * 2 * 1024 * (1500 + 3 + 1) * 4  # one 30 s window, whatever the length
    assert plan_memory(small_shaped(), 500, guided=False, available=1).kv_cache == plan.kv_cache // 2
    assert plan_memory(small_shaped(torch.float16), 500, guided=True, available=1).kv_cache == plan.kv_cache // 2


def test_audio_grows_with_the_piece_and_the_codec_decode_stops_at_one_chunk():
    short = plan_memory(small_shaped(), num_frames=500, guided=True, available=1)
    long = plan_memory(small_shaped(), num_frames=30_000, guided=True, available=1)
    assert long.audio == 30_000 * 640 * 4 + 4 * 30_000 * 8  # float32 samples and int64 codes
    assert long.saving == SAVE_BYTES * 30_000 * 640
    assert long.codec == plan_memory(small_shaped(), CHUNK_FRAMES + 2 * CONTEXT_FRAMES, True, available=1).codec
    assert short.codec < long.codec


@pytest.mark.parametrize("prompts_that_fit, batch_size", [(0.5, 1), (3, 3), (3.9, 3), (1000, MAX_BATCH)])
def test_the_batch_is_what_fits_in_the_usable_memory(prompts_that_fit, batch_size):
    plan = plan_memory(small_shaped(), num_frames=500, guided=True, available=1)
    available = (prompts_that_fit * plan.per_prompt + plan.saving) / USABLE
    plan = plan_memory(small_shaped(), num_frames=500, guided=True, available=int(available))
    assert plan.batch_size == batch_size and plan.fits


def test_a_clip_that_cannot_fit_alone_is_reported():
    plan = plan_memory(small_shaped(), num_frames=50 * 3600, guided=True, available=4 * 10**9)  # an hour, 4 GB
    assert not plan.fits and plan.batch_size == 1


def test_an_audio_prompt_counts_its_samples_and_one_encode_chunk():
    """A prompt's encode (inference/chunked.py) is planned: its float32 samples, and one chunk's activations."""
    none = plan_memory(small_shaped(), num_frames=50 * 3600, guided=True, available=1)
    hour = plan_memory(small_shaped(), num_frames=50 * 3600, guided=True, prompt_frames=50 * 3590, available=1)
    chunk = (CHUNK_FRAMES + 2 * CONTEXT_FRAMES) * 640
    assert none.encode == 0
    assert hour.encode == 50 * 3590 * 640 * 4 + ENCODER_BYTES * 64 * chunk  # 460 MB + 1.7 GB, not 7 GB at once
    assert hour.per_prompt - hour.prefill == none.per_prompt - none.prefill + hour.encode

"""Fixtures shared by several test files, and the CPU thread policy of the test run (threads.py)."""

import threads  # noqa: I001  (first: OpenMP reads its wait policy when torch loads)

from pathlib import Path

import pytest
import torch

from inference import MusicGen
from tests.musicgen_oracle import save_tiny_musicgen

threads.apply_threads()

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models are far too small for intra-op threads; on a busy 2-core machine threads cost 10x.

    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo() -> MusicGen:
    """The bundled demo model, as `MusicGen.from_pretrained` loads it on a CPU (int8, the default)."""
    return MusicGen.from_pretrained(DEMO, device="cpu")


@pytest.fixture(scope="module")
def tiny_stereo(tmp_path_factory) -> MusicGen:
    """A tiny random stereo MusicGen saved by transformers and loaded by ours."""
    _, folder = save_tiny_musicgen(tmp_path_factory.mktemp("stereo"), stereo=True)
    return MusicGen.from_pretrained(folder, device="cpu")

"""Fixtures shared by several test files, and the CPU thread policy of the test run (threads.py)."""

import threads  # noqa: I001  (first: OpenMP reads its wait policy when torch loads)

import pytest
import torch

threads.apply_threads()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models are far too small for intra-op threads; on a busy 2-core machine threads cost 10x.

    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

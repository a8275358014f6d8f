"""The one-step pass of a window recorded in a CUDA graph and replayed for every step (gpt-fast's approach).

Decoding one step of a small batch on a GPU launches a few hundred small kernels; their launch cost, not the
arithmetic, sets the speed. A CUDA graph records the launches once and replays them as one. What it records
must have fixed shapes and read its inputs from fixed buffers: `StaticStep` switches the model's KV cache to its
static mode (the position a device tensor, attention over the whole buffer under a mask, lm/transformer.py)
and feeds the step through buffers it owns. Sampling stays outside the graph, so any generator works.
torch.compile is not used: on CPU inductor took minutes to compile the step and its kernels were slower than
eager's, and on CUDA the graph alone removes the launch cost. Re-measured for issue 22 (torch 2.13, a 2-core
Xeon shared with other work, load 10-14): compiling the demo model's static int8 step (5 layers, dim 256)
and running its first window (5 frames) took 640 s; inductor's int8 matrix-vector products for one musicgen-small
layer, compiled alone (one thread), were 2.3x (a fused multiply-and-sum) and 4x (x @ W^T dequantized) slower
than the eager int8 kernel.
"""

from collections.abc import Callable

import torch

from lm.transformer import KVCache


class StaticStep:
    """A one-step pass with static shapes: call(steps [B, K, 1], position) -> its output (logits).

    Args:
        step: the pass, step(steps) -> logits, reading and writing `cache` (the decoding loop's own function).
        cache: a window's cache, already filled by the prefill pass (which allocates its buffers).
        steps: an example input [B, K, 1] (shape and device of every later one).
        record: record a CUDA graph (CUDA only); False runs the same static step eagerly (what tests check).
    """

    def __init__(self, step: Callable[[torch.Tensor], torch.Tensor], cache: KVCache, steps: torch.Tensor,
                 record: bool) -> None:
        if record and steps.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device; the model is on {steps.device.type}")
        self.steps = steps.clone()  # [B, K, 1]
        self.position = cache.make_static()
        self.graph = None

        self.run = lambda: step(self.steps)  # noqa: E731
        if record:
            # warm-up writes at the last position, which no real step attends to (the last step is never fed)
            self.position.fill_(cache.capacity - 1)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # lazy library initialisation must not happen during capture
                for _ in range(2):
                    self.run()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits = self.run()  # [B, K, V], rewritten in place by every replay

    def __call__(self, steps: torch.Tensor, position: int) -> torch.Tensor:
        self.steps.copy_(steps)
        self.position.fill_(position)
        if self.graph is None:
            return self.run()
        self.graph.replay()
        return self.logits

"""Speed applied to the one model at the call site: transforms that change how `MusicGenLM` computes, not what.

gpt-fast's approach: the model in lm/ is the only model; a transform swaps some of its modules in place for
faster equivalents, and the same forward, KV cache and decoding loop run it afterwards. Each decoding step
reads every weight of the transformer once for a handful of rows, so its speed is set by the bytes per weight.

- `prepare_for_inference(lm, dtype)` casts the transformer's linear layers (attention and FFN, about 90% of
  the bytes read per step in float32) to bfloat16 or float16 (`CastLinear`).
- `quantize_int8(lm, dtype)` stores them as int8 with one scale per output channel (`Int8Linear`), computed
  with activations in `dtype` (bfloat16 on CPU).

Either applies to a loaded float32 LM, or to an empty one (meta device) before its checkpoint is read:
`load_transform` gives the loader (`lm.loading.build_lm`) the transform and the conversion of each checkpoint
tensor into the transformed module (`load_converted`), so the float32 model never exists in memory at once.

What stays float32, as autocast would keep it: the residual stream, the layer norms, the embeddings, the
condition projections and the output heads. Each block's input is cast to the compute dtype by its first
linear layer, its output is added to the float32 stream; the KV cache takes the dtype of the keys, so
attention runs in the compute dtype too. On random musicgen-small weights with CFG 3 this keeps the
teacher-forced top-1 agreement of bfloat16 with float32 at 98% where casting everything gives 92%, for 16 MB
more per step (the heads). bench/generation.py measures the agreement and speed of each transform.

The default on a CPU is int8 (`default_quantize`): the fastest path measured against the quality bar (top-1
agreement with float32 >= 95%, cross-entropy +1% at most; bench/int8_quality.py). Measured against it (issue
22, an Intel Xeon with AMX, torch 2.13; the numbers and commands are in the README's Benchmarks):
- int8 heads (a quarter of the heads' 32 MB a step): no consistent gain (3% less CPU time a step at 1 s, 4% more
  at 10 s), and top-1 agreement on random musicgen-small weights fell from 95.1% to 93.8%: not taken
  (bench/candidates.py keeps it measurable).
- a bfloat16 residual stream, norms and embeddings too (one dtype, no casts): about 7% less CPU time a step,
  but top-1 agreement 93.5% (CFG-guided 91.3%) on random weights: not taken.
- int4 weights in groups of 32 (`aten._weight_int4pack_mm_for_cpu`): 1.6x less CPU time a step than int8, but
  top-1 agreement 87% on the demo model and 66% on random weights: not offered.
- bfloat16 without int8 (`CastLinear`): slower than int8, close on this Xeon (10.7 against 11.9 steps per CPU
  second for 10 s of audio, one thread), far on an AMD EPYC without AMX (2.7x against 4.6x transformers); it is
  the path that meets the agreement bar everywhere (97-99%), one argument away (`dtype=torch.bfloat16`).
- int8 with float32 activations: the fused kernel has no vectorised float32 path (7x slower): not offered.
- int8 activations too (W8A8: fbgemm's `quantized.linear_dynamic`, one activation scale per step): the faster
  kernel on this Xeon (the 24 layers' products of one step for 2 rows, two threads: 28 ms against 35 ms for
  `_weight_int8pack_mm`, 12.6 against 10.1 GB/s, where the memory gives 21-23 GB/s), but top-1 agreement 97.9%
  / 96.6% (CFG-guided) on the demo model and 94.5% / 90.6% on random weights: not offered
  (bench/candidates.py `int8-dyn`), and it rests on torch's deprecated quantized tensors.
- attention: torch's flash kernel already beats a product written for one query and SDPA's math backend for
  one query over 12 to 1500 cached keys in bfloat16 (bench/attention.py), so lm/transformer.py is unchanged.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lm.loading import LoadTransform
from lm.model import MusicGenLM

FEW_ROWS = 16  # up to this many rows, reduced-precision linears on CPUs with AMX use the transposed product
FUSED_ROWS = 8  # up to this many rows (any number without AMX), int8 linears on CPU use the fused kernel
AMX = torch.cpu._is_amx_tile_supported()


class CastLinear(nn.Module):
    """A bias-free linear layer stored and computed in a reduced dtype; float inputs are cast to it.

    On a CPU with AMX, a product of few rows (decoding: one or two rows per prompt) is computed as (W @ x^T)^T:
    the same sums, through a oneDNN kernel that streams W as stored. One thread, 2 bf16 rows through the
    musicgen-small matrices: on a Xeon with AMX 12 GB/s against 9 GB/s for x @ W^T; on an AMD EPYC without AMX
    (avx512_bf16) the opposite, 4.4 GB/s against 15 GB/s. float16 has no fast CPU kernel for this shape
    (~4.5 GB/s either way): use bfloat16 on CPU.
    """

    def __init__(self, weight: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().to(dtype), requires_grad=False)  # [D_out, D_in]

    def state_for(self, weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """This layer's state for the float weight [D_out, D_in]: how a loader fills one built empty."""
        return CastLinear(weight, self.weight.dtype).state_dict()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.weight.dtype)
        rows = x.numel() // x.shape[-1]
        if x.device.type == "cpu" and rows <= FEW_ROWS and AMX:
            out = self.weight @ x.reshape(rows, x.shape[-1]).t()  # [D_out, rows]
            return out.t().contiguous().view(*x.shape[:-1], self.weight.shape[0])  # [..., D_out]
        return F.linear(x, self.weight)


class Int8Linear(nn.Module):
    """Weight-only int8: W ~= q * scale, q int8 [D_out, D_in], one scale per output channel (symmetric absmax).

    The int8 weights are a quarter of float32's bytes. On CPU the product runs in torch's own fused kernel
    (`aten._weight_int8pack_mm`: int8 weights, bfloat16 activations, the scale applied to the sums), which
    read the six musicgen-small matrices of a layer for 2 rows in 0.65 ms where float32 took 5.0 ms and
    bfloat16 1.7 ms (one thread, AMD EPYC, bench/int8_kernels.py). That kernel needs D_in to be a multiple of
    16 (other widths gave wrong sums, or a crash for 2, in torch 2.13); every published MusicGen's is. Other
    widths and other devices (CUDA) dequantize the weights on the fly: the memory saving is kept, the speed is
    that of the compute dtype or less.

    The fused kernel's time grows with the rows beyond a few (it is bound by its arithmetic, not by the weights'
    bytes): the 24 musicgen-small layers' products took 34, 37, 70, 105 and 2260 ms for 2, 4, 8, 16 and 512 rows
    where dequantizing each matrix to bfloat16 on the fly took 97, 86, 86, 88 and 305 ms (Intel Xeon with AMX,
    two threads). So on a CPU with AMX, whose bfloat16 products are fast at any number of rows, more than
    FUSED_ROWS rows (a batch of 5 or more prompts with CFG, the prefill of a prompt) are dequantized: an audio
    prompt's prefill of 512 rows 7x faster. CPUs without AMX keep the fused kernel (not measured there).
    """

    def __init__(self, weight: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        weight = weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127  # [D_out]
        self.register_buffer("weight", torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(dtype))  # [D_out], in the compute dtype

    def state_for(self, weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """This layer's state (int8 weight and scale) for the float weight [D_out, D_in]: how a loader fills one
        built empty."""
        return Int8Linear(weight, self.scale.dtype).state_dict()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.scale.dtype)
        rows = x.numel() // x.shape[-1]
        if x.device.type == "cpu" and x.shape[-1] % 16 == 0 and (rows <= FUSED_ROWS or not AMX):
            out = torch.ops.aten._weight_int8pack_mm(x.reshape(rows, x.shape[-1]), self.weight, self.scale)
            return out.view(*x.shape[:-1], self.weight.shape[0])  # [..., D_out]
        return F.linear(x, self.weight.to(x.dtype)) * self.scale  # dequantized on the fly


def prepare_for_inference(lm: MusicGenLM, dtype: torch.dtype) -> MusicGenLM:
    """Cast the transformer's linear layers of `lm` to `dtype` in place (float32: nothing to do); returns lm.

    The float32 weights are released as each layer is swapped, so the model shrinks to about half its size.
    """
    if dtype == torch.float32:
        return lm
    _check_reduced(dtype)
    return _swap_linears(lm, lambda weight: CastLinear(weight, dtype))


def _check_reduced(dtype: torch.dtype) -> None:
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"reduced precision is bfloat16 or float16, got {dtype}")


def quantize_int8(lm: MusicGenLM, dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None) -> MusicGenLM:
    """Store the transformer's linear layers of `lm` as int8 (weight-only, per-channel scales) in place.

    Args:
        lm: the model, in float32 (or any float dtype), or empty (on the meta device).
        dtype: the compute dtype of the activations; default bfloat16 on CPU (the fused kernel's), float16 on
            CUDA.
        device: where the model will run; default where it is (give it for an empty model).
    Raises:
        ValueError: one line, when the device has no kernel for it (checked on a small product first).
    """
    device = torch.device(device) if device is not None else lm.out_norm.weight.device
    dtype = check_int8_kernel(device, dtype)
    return _swap_linears(lm, lambda weight: Int8Linear(weight, dtype))


def check_int8_kernel(device: torch.device, dtype: torch.dtype | None) -> torch.dtype:
    """The compute dtype of int8 layers on `device` (`dtype`, or its default), once a small product ran.

    Raises:
        ValueError: one line, when the device has no kernel for it.
    """
    dtype = dtype or (torch.bfloat16 if device.type == "cpu" else torch.float16)
    probe = Int8Linear(torch.ones(8, 64, device=device), dtype)
    try:
        probe(torch.ones(2, 64, device=device))
    except (RuntimeError, NotImplementedError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"int8 decoding has no kernel on {device} with {dtype} activations: {message}") from None
    return dtype


def _swap_linears(lm: MusicGenLM, make: Callable[[torch.Tensor], nn.Module]) -> MusicGenLM:
    """Replace every nn.Linear of the transformer (not the heads or condition projections) by make(weight)."""
    lm.eval().requires_grad_(False)
    for parent in list(lm.transformer.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                setattr(parent, name, make(child.weight))
    return lm


def default_quantize(device: torch.device, dtype: torch.dtype | None) -> str | None:
    """What `MusicGen.from_pretrained(quantize="auto")` and `generate.py --quantize auto` choose: "int8" on a CPU
    when no dtype is asked for, else None (float16 on CUDA, or the dtype given).

    int8 is the fastest CPU path measured against the quality bar (top-1 agreement with float32 >= 95%,
    cross-entropy +1% at most; bench/int8_quality.py): 98% on the demo model's held-out tokens; on random
    musicgen-small weights 95.1-95.3% on the conditional logits and 93.9-94.9% on the CFG-guided ones (near-ties
    of almost flat distributions), the cross-entropy unchanged to 0.01%.
    """
    return "int8" if torch.device(device).type == "cpu" and dtype is None else None


def load_transform(device: torch.device, dtype: torch.dtype | None, quantize: str | None) -> LoadTransform | None:
    """`quantize_int8` (quantize "int8") or `prepare_for_inference` as a transform of the empty LM, for the loader.

    None where there is nothing to transform (float32 without quantization). The int8 kernel is checked now.
    """
    if quantize == "int8":
        dtype = check_int8_kernel(device, dtype)
        return LoadTransform(lambda lm: quantize_int8(lm, dtype, device), load_converted)
    if dtype == torch.float32:
        return None
    _check_reduced(dtype)
    return LoadTransform(lambda lm: prepare_for_inference(lm, dtype), load_converted)


def load_converted(module: nn.Module, name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """The loader's conversion (`checkpoint_io.load_strict`) for a transformed empty LM: a weight loaded into a
    swapped linear layer becomes what that layer holds (cast, or int8 and scales); every other tensor float32.

    Always a new tensor: a view of a memory-mapped checkpoint (audiocraft's `state_dict.bin`) kept in the model
    would keep the whole file's pages resident.
    """
    if isinstance(module, CastLinear | Int8Linear):
        return module.state_for(tensor)
    return {name: tensor.to(torch.float32, copy=True)}


def compute_dtype(lm: MusicGenLM) -> torch.dtype:
    """The dtype the transformer's matrix products run in (float32 unless transformed)."""
    linear = lm.transformer.layers[0].linear1
    return linear.scale.dtype if isinstance(linear, Int8Linear) else linear.weight.dtype

"""A reduced-precision or int8 LM is built in its final form by the loader (transform while empty, then each
tensor converted as it is read), and equals the same transform applied after a float32 load, exactly."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from checkpoint_io import CheckpointError, LazyTensors, rename_with_table
from inference import MusicGen
from inference.speed import CastLinear, Int8Linear, prepare_for_inference, quantize_int8
from tests.musicgen_oracle import CARD, save_tiny_musicgen

VARIANTS = {"bfloat16": {"dtype": torch.bfloat16}, "float16": {"dtype": torch.float16}, "int8": {"quantize": "int8"}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_musicgen(tmp_path_factory.mktemp("tiny"))[1]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_loader_builds_the_final_form_equal_to_converting_after_a_float32_load(folder, variant):
    loaded = MusicGen.from_pretrained(folder, device="cpu", **VARIANTS[variant]).lm
    layer_type = Int8Linear if variant == "int8" else CastLinear
    linears = [m for m in loaded.transformer.modules() if isinstance(m, nn.Linear | CastLinear | Int8Linear)]
    assert linears and all(isinstance(m, layer_type) for m in linears)
    weight_dtype = torch.int8 if variant == "int8" else VARIANTS[variant]["dtype"]
    assert all(m.weight.dtype == weight_dtype and m.weight.device.type == "cpu" for m in linears)
    if variant == "int8":
        assert all(m.scale.dtype == torch.bfloat16 for m in linears)
    swapped = {f"transformer.{name}" for name, m in loaded.transformer.named_modules() if isinstance(m, layer_type)}
    rest = {k: v for k, v in loaded.state_dict().items() if k.rpartition(".")[0] not in swapped}
    assert rest and all(v.dtype == torch.float32 for v in rest.values())  # heads, embeddings, norms, projections

    reference = MusicGen.from_pretrained(folder, device="cpu", dtype=torch.float32).lm
    dtype = VARIANTS[variant].get("dtype")
    reference = quantize_int8(reference, dtype) if variant == "int8" else prepare_for_inference(reference, dtype)
    ours, theirs = loaded.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]) for k in ours)
    codes = torch.randint(0, CARD, (2, loaded.config.num_codebooks, 6), generator=torch.Generator().manual_seed(0))
    cond = torch.randn(2, 3, loaded.config.dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(codes, cond), reference(codes, cond))


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_sharded_safetensors_load_as_one_file_does(folder, tmp_path, variant):
    state = load_file(folder / "model.safetensors")
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for shard, shard_names in shards.items():
        save_file({k: state[k] for k in shard_names}, tmp_path / shard, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(shard_names, shard)
    for extra in folder.iterdir():
        if extra.name != "model.safetensors":
            (tmp_path / extra.name).write_bytes(extra.read_bytes())
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    options = {"quantize": "int8"} if variant == "int8" else {"dtype": torch.float32}
    sharded = MusicGen.from_pretrained(tmp_path, device="cpu", **options).lm.state_dict()
    single = MusicGen.from_pretrained(folder, device="cpu", **options).lm.state_dict()
    assert sharded.keys() == single.keys() and all(torch.equal(sharded[k], single[k]) for k in single)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_transformed_load_refuses_bad_tensors_with_the_same_errors(folder, tmp_path, variant):
    def edited(name: str, edit) -> MusicGen:
        state = load_file(folder / "model.safetensors")
        state[name] = edit(state[name].clone())
        copy = tmp_path / str(len(list(tmp_path.iterdir())))
        copy.mkdir()
        for extra in folder.iterdir():
            (copy / extra.name).write_bytes(extra.read_bytes())
        save_file(state, copy / "model.safetensors")
        return MusicGen.from_pretrained(copy, device="cpu", **VARIANTS[variant])

    fc1 = "decoder.model.decoder.layers.0.fc1.weight"
    with pytest.raises(CheckpointError, match=r"tensor transformer\.layers\.0\.linear1\.weight holds NaN"):
        edited(fc1, lambda t: t.index_fill_(1, torch.tensor([0]), float("nan")))
    with pytest.raises(CheckpointError, match=r"wrong shape: transformer\.layers\.0\.linear1\.weight: checkpoint"):
        edited(fc1, lambda t: t[:, :-1].contiguous())
    with pytest.raises(CheckpointError, match=r"expected floating point"):
        edited(fc1, lambda t: t.to(torch.int32))


def test_lazy_tensors_are_read_one_by_one_and_rename_as_eager_ones():
    eager = {"packed": torch.arange(12.0).view(6, 2), "plain": torch.ones(3)}
    reads = []

    def read(name):
        reads.append(name)
        return eager[name].clone()

    lazy = LazyTensors({k: v.to("meta") for k, v in eager.items()}, read)
    table = {"packed": ("q", "k", "v"), "plain": "norm"}
    renamed = rename_with_table(lazy, table, "test")
    assert isinstance(renamed, LazyTensors) and reads == []  # names and shapes come from the specs
    assert {k: v.shape for k, v in renamed.specs.items()} == {"q": (2, 2), "k": (2, 2), "v": (2, 2), "norm": (3,)}
    expected = rename_with_table(eager, table, "test")
    for name in ("k", "norm"):
        assert torch.equal(renamed[name], expected[name])
    assert reads == ["packed", "plain"]
    assert renamed["v"].untyped_storage().nbytes() == 2 * 2 * 4  # a row block of its own, not a view of all rows

"""LoRA fine-tuning (`train.py lm --lora-rank`, training/lora.py) and adapters merged at load (inference/lora.py).

The oracle: the adapter folder our training writes, read by peft into transformers' MusicGen, gives the same
greedy codes as our model with the adapter merged. One short run on the tiny transformers checkpoint serves
most tests; resume and the two-process run make their own.
"""

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import peft
import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import generate
from checkpoint_io import CheckpointError
from corpus.tones import write_synthetic_dataset
from inference import MusicGen
from inference.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from inference.speed import Int8Linear, quantize_int8
from tests.musicgen_oracle import hf_generate_codes, save_tiny_melody_musicgen, save_tiny_musicgen
from training.checkpoints import read_checkpoint
from training.lm_settings import LMTrainSettings, resolve_lm_settings
from training.lm_train import BestWeights, build_model, train_lm

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["jazz song", "lo-fi funk"]
pytestmark = pytest.mark.usefixtures("one_thread")


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def lora_settings(tmp: Path, tiny: Path, **changes) -> LMTrainSettings:
    paths = write_synthetic_dataset(tmp / "data", count=3, seconds=0.5, sample_rate=4000, seed=1)
    for path, words in zip(paths, ("jazz song", "lo-fi funk", "80s pop track"), strict=True):
        path.with_suffix(".txt").write_text(words)
    settings = LMTrainSettings(data=str(tmp / "data"), init=str(tiny), out=str(tmp / "run"), segment_seconds=0.2,
                               batch_size=2, valid_examples=2, num_workers=0, progress_bar=False, accelerator="cpu",
                               max_steps=4, lr=0.05, warmup_steps=0, valid_every=1000, sample_every=0, log_every=1,
                               lora_rank=4, lora_targets="self_attn,cross_attn,ffn")
    return replace(settings, **changes)


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """(tiny base folder, its digest before training, the run's settings, summary): 4 LoRA steps, a high lr."""
    tmp = tmp_path_factory.mktemp("lora")
    _, tiny = save_tiny_musicgen(tmp / "tiny")
    digest = folder_digest(tiny)
    settings = lora_settings(tmp, tiny)
    return tiny, digest, settings, train_lm(settings)


def test_adapter_gives_the_greedy_codes_of_peft_and_transformers(adapted):
    tiny, _, settings, _ = adapted
    adapter = Path(settings.out) / "adapter"
    oracle = peft.PeftModel.from_pretrained(transformers.MusicgenForConditionalGeneration.from_pretrained(tiny),
                                            str(adapter)).eval()
    want, _ = hf_generate_codes(oracle, PROMPTS, 12, guidance_scale=3.0)
    ours = MusicGen.from_pretrained(tiny, device="cpu", lora=adapter).generate_tokens(PROMPTS, duration=0.24,
                                                                                     use_sampling=False)
    assert torch.equal(ours, want)
    base = MusicGen.from_pretrained(tiny, device="cpu")
    assert (base.generate_tokens(PROMPTS, duration=0.24, use_sampling=False) != ours).float().mean() > 0.5
    unscaled = MusicGen.from_pretrained(tiny, device="cpu", lora=adapter, lora_scale=0.0)
    assert torch.equal(unscaled.lm.transformer.layers[1].linear2.weight, base.lm.transformer.layers[1].linear2.weight)


def test_adapter_folder_checkpoints_and_summary(adapted):
    tiny, digest, settings, summary = adapted
    out = Path(settings.out)
    assert folder_digest(tiny) == digest  # the base folder is never written
    assert sorted(p.name for p in (out / "adapter").iterdir()) == [ADAPTER_CONFIG, ADAPTER_WEIGHTS]
    assert not (out / "export").exists()
    names = set(load_file(out / "adapter" / ADAPTER_WEIGHTS))
    layer = "base_model.model.decoder.model.decoder.layers.{}.{}.lora_{}.weight"
    locals_ = [f"{a}.{p}" for a in ("self_attn", "encoder_attn") for p in ("q_proj", "k_proj", "v_proj", "out_proj")]
    assert names == {layer.format(i, m, ab) for i in range(2) for m in [*locals_, "fc1", "fc2"] for ab in "AB"}
    config = json.loads((out / "adapter" / ADAPTER_CONFIG).read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"], config["base_model_name_or_path"]) == (
        "LORA", 4, 4, str(tiny))
    checkpoint = read_checkpoint(out / "checkpoints" / "last.ckpt")  # the adapter and its optimizer state only
    assert len(checkpoint["state_dict"]) == 40 and all("lora_" in k for k in checkpoint["state_dict"])
    assert len(checkpoint["optimizer_states"][0]["state"]) == 40
    assert summary["adapter"]["parameters"] == 2 * (8 * 4 * (32 + 32) + 4 * (32 + 64) + 4 * (64 + 32))
    assert summary["valid_loss"]["first_step"] == 0 and summary["valid_loss"]["last"] < summary["valid_loss"]["first"]


def test_merged_before_int8(adapted):
    """int8 weights of an adapted model are those of the merged float weights, quantized."""
    tiny, _, settings, _ = adapted
    adapter = Path(settings.out) / "adapter"
    merged = MusicGen.from_pretrained(tiny, device="cpu", lora=adapter).lm
    quantized = MusicGen.from_pretrained(tiny, device="cpu", lora=adapter, quantize="int8").lm
    want = quantize_int8(merged, torch.bfloat16).transformer.layers[0].self_attn.q_proj
    got = quantized.transformer.layers[0].self_attn.q_proj
    assert isinstance(got, Int8Linear) and torch.equal(got.weight, want.weight) and torch.equal(got.scale, want.scale)


def write_adapter(folder: Path, config: dict, tensors: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config))
    save_file(tensors, folder / ADAPTER_WEIGHTS)
    return folder


def test_a_mismatched_adapter_is_refused_in_one_line(adapted, tmp_path, capsys):
    tiny, _, settings, _ = adapted
    good = Path(settings.out) / "adapter"
    config, tensors = json.loads((good / ADAPTER_CONFIG).read_text()), load_file(good / ADAPTER_WEIGHTS)
    q = "base_model.model.decoder.model.decoder.layers.0.self_attn.q_proj.lora_{}.weight"
    renamed = {k.replace("layers.1.", "layers.7."): v for k, v in tensors.items()}
    narrow = {**tensors, q.format("A"): torch.zeros(4, 16)}
    cases = {
        r"changes decoder\.model\.decoder\.layers\.7\.\S+, which .* does not have \(2 layers":
            write_adapter(tmp_path / "names", config, renamed),
        r"lora_A \[4, 16\] and lora_B \[32, 4\], which do not fit its weight \[32, 32\]":
            write_adapter(tmp_path / "shape", config, narrow),
        "has rank 4, its adapter_config.json says r = 8": write_adapter(tmp_path / "rank", {**config, "r": 8}, tensors),
        "peft_type 'IA3'": write_adapter(tmp_path / "ia3", {**config, "peft_type": "IA3"}, tensors),
        r"DoRA \(use_dora\) is not supported": write_adapter(tmp_path / "dora", {**config, "use_dora": True}, tensors),
    }
    for message, folder in cases.items():
        with pytest.raises(CheckpointError, match=message) as refused:
            MusicGen.from_pretrained(tiny, device="cpu", lora=folder)
        assert "\n" not in str(refused.value)
    assert generate.main(["x", "--model", str(tiny), "--lora", str(tmp_path / "rank"), "--output",
                          str(tmp_path / "x.wav")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has rank 4, its adapter_config.json says r = 8" in err
    assert not (tmp_path / "x.wav").exists()


def test_generate_records_the_adapter_in_the_sidecar(adapted, tmp_path):
    tiny, _, settings, _ = adapted
    adapter = Path(settings.out) / "adapter"
    out = tmp_path / "clip.wav"
    assert generate.main(["jazz song", "--model", str(tiny), "--lora", str(adapter), "--lora-scale", "0.5",
                          "--duration", "0.2", "--seed", "1", "--output", str(out), "--device", "cpu"]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert (record["lora"], record["lora_scale"]) == (str(adapter), 0.5)


def test_resume_continues_the_adapter_and_its_optimizer(tmp_path):
    _, tiny = save_tiny_musicgen(tmp_path / "tiny")
    settings = lora_settings(tmp_path, tiny, max_steps=2, lr=1e-2, lora_targets="self_attn.q_proj,linear1")
    train_lm(settings)
    last = Path(settings.out) / "checkpoints" / "last.ckpt"
    stopped = read_checkpoint(last)
    resumed = resolve_lm_settings({"resume": str(last), "max_steps": 4}, stopped["settings"])
    train_lm(resumed)
    final = read_checkpoint(last)
    assert final["global_step"] == 4 and float(final["optimizer_states"][0]["state"][0]["step"]) == 4.0
    assert [e["step"] for e in final["history"]["train"]] == [1, 2, 3, 4]
    assert set(final["state_dict"]) == set(stopped["state_dict"]) and len(stopped["state_dict"]) == 8
    key = "lm.transformer.layers.0.linear1.lora_B.default.weight"
    assert not torch.equal(final["state_dict"][key], stopped["state_dict"][key])  # trained on from step 2


def test_lora_settings_and_targets_are_checked(adapted, tmp_path):
    tiny, _, settings, _ = adapted
    with pytest.raises(ValueError, match="--lora-rank needs --init"):
        replace(settings, init=None, codec=str(tiny)).check()
    with pytest.raises(ValueError, match="unknown target 'mlp'"):
        replace(settings, lora_targets="self_attn,mlp").check()
    lm = build_model(replace(settings, lora_targets="cross_attn.v_proj,linear2"))[0]
    wrapped = {name for name, module in lm.named_modules() if isinstance(module, peft.tuners.lora.LoraLayer)}
    assert wrapped == {f"transformer.layers.{i}.{m}" for i in range(2) for m in ("cross_attn.v_proj", "linear2")}
    assert {n for n, p in lm.named_parameters() if p.requires_grad} == {
        f"{name}.lora_{ab}.default.weight" for name in wrapped for ab in "AB"}
    _, melody = save_tiny_melody_musicgen(tmp_path / "melody")
    with pytest.raises(ValueError, match="is a melody model: fine-tuning it .* no melodies to condition it on"):
        build_model(replace(settings, init=str(melody)))


def test_two_cpu_processes(tmp_path):
    """The same Lightning flags run LoRA on several devices: DDP with two CPU processes."""
    _, tiny = save_tiny_musicgen(tmp_path / "tiny")
    settings = lora_settings(tmp_path, tiny)
    out = tmp_path / "ddp"
    command = [sys.executable, "train.py", "--threads", "1", "lm", "--init", str(tiny), "--data", settings.data,
               "--out", str(out), "--lora-rank", "2", "--segment-seconds", "0.2", "--batch-size", "2",
               "--valid-examples", "2", "--num-workers", "0", "--max-steps", "2", "--warmup-steps", "0",
               "--sample-every", "0", "--no-progress-bar", "--accelerator", "cpu", "--devices", "2",
               "--strategy", "ddp"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and (out / "adapter" / ADAPTER_WEIGHTS).is_file()


def test_early_stop_ends_the_run_when_the_validation_loss_stops_falling(tmp_path):
    _, tiny = save_tiny_musicgen(tmp_path / "tiny")
    settings = lora_settings(tmp_path, tiny, max_steps=10, lr=0.0, valid_every=1, early_stop=1)  # a flat loss
    summary = train_lm(settings)
    assert summary["steps"] == 2  # step 1 sets the best loss, step 2 does not beat it: stop
    first = summary["valid_loss"]  # validated before training too (step 0): with lr 0 nothing beat it
    assert summary["best"] == {"step": first["first_step"], "loss": first["first"]} and first["first_step"] == 0
    assert (Path(settings.out) / "adapter" / ADAPTER_WEIGHTS).is_file()


def test_early_stop_exports_the_weights_of_the_lowest_validation_loss():
    """BestWeights keeps the trained weights of the best validation (through a checkpoint too) and puts them back."""
    module = torch.nn.Linear(2, 1)
    module.bias.requires_grad_(False)  # frozen: not kept
    module.history = {"valid": []}
    trainer = SimpleNamespace(sanity_checking=False)
    best = BestWeights()
    for step, loss in ((1, 3.0), (2, 2.0), (3, 4.0)):
        with torch.no_grad():
            module.weight.fill_(step)
        module.history["valid"].append({"step": step, "loss": loss})
        best.on_validation_end(trainer, module)
    resumed = BestWeights()
    resumed.load_state_dict(best.state_dict())
    assert resumed.restore(module) and (resumed.step, resumed.loss) == (2, 2.0)
    assert torch.equal(module.weight, torch.full((1, 2), 2.0)) and set(resumed.weights) == {"weight"}
    assert not BestWeights().restore(module)  # no validation: nothing to put back


def test_resume_refuses_flags_that_change_the_trained_weights():
    saved = {"init": "facebook/musicgen-small", "lora_rank": 0, "max_steps": 10}  # a full fine-tune's settings
    with pytest.raises(ValueError, match=r"--lora-rank 8: the run being resumed was trained with lora_rank 0"):
        resolve_lm_settings({"resume": "last", "lora_rank": 8}, saved)
    adapter = {**saved, "lora_rank": 8, "lora_targets": "self_attn"}
    with pytest.raises(ValueError, match="--lora-targets ffn: .* trained with lora_targets self_attn"):
        resolve_lm_settings({"resume": "last", "lora_targets": "ffn"}, adapter)
    with pytest.raises(ValueError, match="--init other: .* trained with init facebook/musicgen-small"):
        resolve_lm_settings({"resume": "last", "init": "other"}, adapter)
    resumed = resolve_lm_settings({"resume": "last", "lora_rank": 8, "max_steps": 20}, adapter)  # the same: fine
    assert (resumed.lora_rank, resumed.max_steps, resumed.lora_targets) == (8, 20, "self_attn")

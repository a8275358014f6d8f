"""generate.py with many prompts: batches of a size chosen from memory, each written before the next, every
clip reproducible; a clip too large for the memory is refused before any generation. Tiny checkpoint, offline."""

import json
from dataclasses import replace
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

import generate
import inference.memory
from inference.audio import read_audio
from tests.musicgen_oracle import save_tiny_musicgen

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["lo-fi funk", "80s pop track", "jazz song", "bassy drums"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_musicgen(tmp_path_factory.mktemp("tiny"))[1]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))


def run(capsys, tiny: Path, folder: Path, prompts: list[str], *options) -> tuple[int, str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder.parent / f"{folder.name}.txt").write_text("\n".join(prompts) + "\n")
    argv = ["--prompts-file", folder.parent / f"{folder.name}.txt", "--model", tiny, "--duration", 0.3,
            "--output", f"{folder}/", *options]
    code = generate.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def clips(folder: Path) -> list[tuple[dict, torch.Tensor]]:
    """(sidecar, audio) of every clip in the folder, by index."""
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return [(r, read_audio(folder / r["files"]["audio"])[0]) for r in sorted(records, key=lambda r: r["index"])]


def test_many_prompts_are_generated_in_batches_each_with_its_seed(tiny, tmp_path, capsys):
    prompts = PROMPTS
    code, out, _ = run(capsys, tiny, tmp_path / "all", prompts, "--seed", 7, "--batch-size", 2)
    assert code == 0
    assert "batch      2 prompts at a time, 2 batches (--batch-size)" in out
    written = clips(tmp_path / "all")
    assert [r["index"] for r, _ in written] == [1, 2, 3, 4]
    assert [(r["batch"], r["batch_seed"], r["batch_size"], r["seed"]) for r, _ in written] == [
        (0, 7, 2, 7), (0, 7, 2, 7), (1, 8, 2, 7), (1, 8, 2, 7)]  # batch b (from 0, as the README says): seed + b
    # a clip is reproduced by the same command, or by its batch alone with the batch's seed
    run(capsys, tiny, tmp_path / "again", prompts, "--seed", 7, "--batch-size", 2)
    run(capsys, tiny, tmp_path / "second", prompts[2:], "--seed", 8, "--batch-size", 2)
    again, second = clips(tmp_path / "again"), clips(tmp_path / "second")
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(written, again, strict=True))
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(written[2:], second, strict=True))
    assert not torch.equal(written[0][1], written[2][1])


def with_available(monkeypatch, available) -> None:
    """Make the memory plan see `available(plan)` bytes available (a function of the plan's own estimates)."""
    real = inference.memory.plan_memory

    def plan_memory(*args, **kwargs) -> inference.memory.MemoryPlan:
        plan = real(*args, **kwargs)
        return replace(plan, available=available(plan))

    monkeypatch.setattr(inference.memory, "plan_memory", plan_memory)


def test_the_batch_size_comes_from_the_free_memory(tiny, tmp_path, capsys, monkeypatch):
    code, out, _ = run(capsys, tiny, tmp_path / "roomy", PROMPTS[:3], "--seed", 1)
    assert code == 0 and "batch      3 prompts at a time, 1 batch (about " in out  # as before: one batch
    assert {r["batch_seed"] for r, _ in clips(tmp_path / "roomy")} == {1}
    with_available(monkeypatch, lambda p: int((2.5 * p.per_prompt + p.saving) / inference.memory.USABLE))
    code, out, _ = run(capsys, tiny, tmp_path / "tight", PROMPTS[:3], "--seed", 1)
    assert code == 0 and "batch      2 prompts at a time, 2 batches" in out
    assert [r["batch_seed"] for r, _ in clips(tmp_path / "tight")] == [1, 1, 2]


def test_each_batch_is_written_before_the_next_starts(tiny, tmp_path, capsys, monkeypatch):
    batches = []
    real = generate.generate

    def interrupted_at_the_second(mg, prompts, *args):
        batches.append(prompts)
        if len(batches) == 2:
            raise KeyboardInterrupt
        return real(mg, prompts, *args)

    monkeypatch.setattr(generate, "generate", interrupted_at_the_second)
    code, _, err = run(capsys, tiny, tmp_path / "out", PROMPTS[:4], "--batch-size", 2)
    assert code == 130 and "interrupted" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "1_lo-fi_funk.json", "1_lo-fi_funk.wav", "2_80s_pop_track.json", "2_80s_pop_track.wav"]


@pytest.mark.parametrize("options, prompts_that_fit, needle", [
    (["--batch-size", 0], 100, "--batch-size must be at least 1"),
    (["--duration", 3600], 0.5, "a 3600 s clip needs about"),
    (["--batch-size", 3], 2.5, "--batch-size 3 needs"),
])
def test_what_cannot_fit_is_refused_in_one_line_before_generating(tiny, tmp_path, capsys, monkeypatch, options,
                                                                   prompts_that_fit, needle):
    with_available(monkeypatch, lambda p: int(prompts_that_fit * p.per_prompt + p.saving))
    monkeypatch.setattr(generate, "generate", lambda *args: pytest.fail("generation started"))
    code, _, err = run(capsys, tiny, tmp_path / "out", PROMPTS, *options)
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ") and needle in err, err
    assert list((tmp_path / "out").iterdir()) == []

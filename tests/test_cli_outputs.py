"""generate.py's files under faults: signals while writing, a full disk, two runs writing the same clip, bytes
that are not UTF-8, and the loudness of what it writes.

The process-level cases run `generate.py` as users do, on the bundled demo model (1 s clips), with a few lines
patched in front of it to deliver the fault at a chosen moment.
"""

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile
import torch

from audio.clip import read_audio, to_db, true_peak
from frontend.outputs import save_clip

ROOT = Path(__file__).resolve().parents[1]
DEMO = ["--model", "demo", "--duration", "1", "--seed", "1"]

# Sends SIGNAL to the process itself at a chosen moment of writing, then carries on as if nothing happened.
FAULTS = {
    "drawing the spectrogram": """
import matplotlib.figure
savefig = matplotlib.figure.Figure.savefig
def faulty_savefig(self, *args, **kwargs):
    os.kill(os.getpid(), SIGNAL)
    return savefig(self, *args, **kwargs)
matplotlib.figure.Figure.savefig = faulty_savefig
""",
    "renaming the files into place": """
replace = os.replace
def faulty_replace(src, dst):
    replace(src, dst)
    if str(dst).endswith(".wav"):
        os.kill(os.getpid(), SIGNAL)
os.replace = faulty_replace
""",
}


def generate_py(argv: list, cwd: Path, setup: str = "", limit_file_size: int | None = None):
    """Run generate.py in a subprocess, after `setup` (Python source, run first in the same process)."""
    code = f"import os, signal, sys\nsys.path.insert(0, {str(ROOT)!r})\n{setup}\nimport generate\n" \
           "sys.exit(generate.main())"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}

    def limits():
        if limit_file_size is not None:  # writing more than this fails with EFBIG, as a full disk does
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=env, capture_output=True,
                          timeout=180, preexec_fn=limits)


def error_lines(stderr: bytes) -> list[str]:
    text = stderr.decode("utf-8", "replace")
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("sig, moment", [(signal.SIGTERM, "drawing the spectrogram"),
                                         (signal.SIGTERM, "renaming the files into place"),
                                         (signal.SIGINT, "drawing the spectrogram")],
                         ids=["SIGTERM-drawing", "SIGTERM-renaming", "SIGINT-drawing"])
def test_a_signal_while_writing_leaves_whole_clips_or_nothing(sig, moment, tmp_path):
    setup = FAULTS[moment].replace("SIGNAL", f"signal.{sig.name}")
    result = generate_py(["jazz", *DEMO, "--output", "x.wav", "--spectrogram"], tmp_path, setup)
    assert result.returncode == 128 + sig, result.stderr.decode()
    assert len(error_lines(result.stderr)) == 1
    names = sorted(p.name for p in tmp_path.iterdir())
    if moment == "renaming the files into place":  # the renames finish, then the signal is handled
        assert names == ["x.json", "x.png", "x.wav"]
        assert json.loads((tmp_path / "x.json").read_text())["seed"] == 1
    else:
        assert names == []  # not a temporary file, not a clip without its sidecar


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    result = generate_py(["jazz", *DEMO, "--output", "x.wav"], tmp_path, limit_file_size=30_000)  # the WAV: 64 kB
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: cannot write x.wav: "), lines
    assert list(tmp_path.iterdir()) == []


def test_a_failing_sidecar_write_takes_its_clip_with_it(tmp_path, monkeypatch, capsys):
    import generate
    from tests.musicgen_oracle import save_tiny_musicgen

    _, tiny = save_tiny_musicgen(tmp_path / "tiny")
    out = tmp_path / "out"
    out.mkdir()
    write_text = Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.parent == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    code = generate.main(["jazz", "--model", str(tiny), "--duration", "0.5", "--output", str(out / "x.wav")])
    err = capsys.readouterr().err
    assert code == 1
    assert [line for line in err.splitlines() if line.startswith("error:")] == \
        [f"error: cannot write {out / 'x.wav'}: No space left on device"]
    assert list(out.iterdir()) == []  # no WAV without its sidecar


def test_two_runs_writing_the_same_clip_leave_one_runs_pair(tmp_path, monkeypatch):
    """Run "a" is held up right after its audio is in place; run "b" writes the same names meanwhile. Whatever
    the timing, the audio and sidecar on disk must come from the same run."""
    path = tmp_path / "same.wav"
    settings = SimpleNamespace(normalize="none")
    clips = {name: torch.full((1, 800), value) for name, value in [("a", 0.25), ("b", -0.5)]}
    b_done, a_held = threading.Event(), threading.Event()
    replace = os.replace

    def slow_replace(src, dst):
        replace(src, dst)
        if threading.current_thread().name == "a" and str(dst).endswith(".wav"):
            a_held.set()
            b_done.wait(timeout=1.0)  # without a lock, "b" writes both of its files now

    monkeypatch.setattr(os, "replace", slow_replace)

    def write(name: str) -> None:
        save_clip(path, clips[name], 800, settings, {"prompt": name}, spectrogram=False)
        if name == "b":
            b_done.set()

    a = threading.Thread(target=write, args=("a",), name="a")
    a.start()
    assert a_held.wait(timeout=30)
    b = threading.Thread(target=write, args=("b",), name="b")
    b.start()
    a.join(), b.join()
    writer = json.loads(path.with_suffix(".json").read_text())["prompt"]
    audio, _ = read_audio(path)
    assert torch.allclose(audio, clips[writer], atol=1e-4), f"the sidecar of run {writer} describes other audio"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.json", "same.wav"]


def test_a_prompt_argument_that_is_not_utf8_is_named(tmp_path):
    result = generate_py([b"jazz \xff", *DEMO, "--output", "x.wav"], tmp_path)  # (--prompts-file: test_cli.py)
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "PROMPT 1 is not valid UTF-8 (byte 0xff)" in lines[0], lines


def test_an_output_name_that_is_not_utf8_is_written(tmp_path):
    result = generate_py(["jazz", *DEMO, "--output", b"caf\xe9.wav"], tmp_path)  # a Latin-1 file name
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(os.listdir(bytes(tmp_path))) == [b"caf\xe9.json", b"caf\xe9.wav"]
    record = json.loads((tmp_path / os.fsdecode(b"caf\xe9.json")).read_text())
    assert record["files"]["audio"] == os.fsdecode(b"caf\xe9.wav")  # kept as a \udce9 escape


def test_a_demo_clip_meets_the_loudness_target(tmp_path):
    result = generate_py(["Lo-fi funk", *DEMO, "--duration", "2", "--output", "x.wav"], tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert "peak-limited" not in result.stdout.decode()
    normalization = json.loads((tmp_path / "x.json").read_text())["normalization"]
    assert abs(normalization["lufs"] + 14) < 0.5 and normalization["note"] is None
    assert normalization["limiter_reduction_db"] > 0  # this clip's peaks needed the limiter
    wav, _ = read_audio(tmp_path / "x.wav")
    assert to_db(true_peak(wav)) <= -1.0 + 0.05  # plus 16-bit rounding
    assert soundfile.info(str(tmp_path / "x.wav")).frames == 2 * 32000

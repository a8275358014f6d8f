"""generate.py, the command line, on the tiny random MusicGen checkpoint (800 Hz, 50 frames/s), offline.

Most tests call `generate.main(argv)` in-process; one runs the script as a subprocess, as users do.
"""

import json
import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
import soundfile
import torch

import generate
from audio.clip import read_audio, to_db, true_peak
from frontend import models
from tests.musicgen_oracle import save_tiny_musicgen

ROOT = Path(__file__).resolve().parents[1]
RATE = 800  # the tiny checkpoint's sample rate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    _, folder = save_tiny_musicgen(tmp_path_factory.mktemp("tiny"))
    return folder


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """No network and an empty Hugging Face cache, whatever the machine has."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))


def run(capsys, *argv) -> tuple[int, str, str]:
    code = generate.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_writes_a_wav_of_the_asked_length_with_its_sidecar(tiny, tmp_path, capsys):
    out = tmp_path / "out.wav"
    code, stdout, _ = run(capsys, "an uplifting jazz song", "--model", tiny, "--duration", 0.5, "--seed", 3,
                          "--output", out, "--top-k", 20, "--cfg", 2.5)
    assert code == 0
    info = soundfile.info(str(out))
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (RATE, 0.5 * RATE, 1, "PCM_16")
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["prompt"] == "an uplifting jazz song" and record["model"] == str(tiny)
    assert (record["seed"], record["seed_was_random"], record["top_k"], record["cfg_coef"]) == (3, False, 20, 2.5)
    assert (record["top_p"], record["temperature"], record["use_sampling"]) == (0.0, 1.0, True)
    assert (record["duration"], record["audio_seconds"], record["sample_rate"]) == (0.5, 0.5, RATE)
    assert (record["device"], record["dtype"], record["normalize"]) == ("cpu", "bfloat16", "loudness")
    assert record["quantize"] == "int8" and "--quantize none: exact float32" in stdout  # the CPU's default path
    assert record["seconds_taken"]["generate"] > 0 and record["real_time_factor"] > 0
    assert record["normalization"]["method"] == "loudness"
    wav, _ = read_audio(out)
    assert to_db(true_peak(wav)) <= -1.0 + 0.05  # the safety limit (plus 16-bit rounding)
    assert "real-time factor" in stdout and "seed       3" in stdout


def test_same_seed_same_audio_and_a_random_seed_is_recorded(tiny, tmp_path, capsys):
    clips = []
    for name, seed in [("a", ["--seed", 11]), ("b", ["--seed", 11]), ("c", [])]:
        code, stdout, _ = run(capsys, "lo-fi funk", "--model", tiny, "--duration", 0.3, "--output",
                              tmp_path / f"{name}.wav", *seed)
        assert code == 0
        clips.append(read_audio(tmp_path / f"{name}.wav")[0])
    assert torch.equal(clips[0], clips[1])
    assert not torch.equal(clips[0], clips[2])
    record = json.loads((tmp_path / "c.json").read_text())
    assert record["seed_was_random"] and f"{record['seed']} (random)" in stdout
    assert "replacing" not in stdout
    code, stdout, _ = run(capsys, "lo-fi funk", "--model", tiny, "--duration", 0.3, "--output", tmp_path / "c.wav")
    assert f"wrote {tmp_path / 'c.wav'} (+ c.json), replacing the file of an earlier run" in stdout  # said, not silent


def test_several_prompts_are_one_batch_of_numbered_files(tiny, tmp_path, capsys):
    code, stdout, _ = run(capsys, "lo-fi funk", "--model", tiny, "", "--duration", 0.3, "--seed", 1,
                          "--output", tmp_path / "song.wav")  # options may sit between the prompts
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["song_1.json", "song_1.wav",
                                                                         "song_2.json", "song_2.wav"]
    first, second = (json.loads((tmp_path / f"song_{i}.json").read_text()) for i in (1, 2))
    assert (first["index"], first["unconditional"], second["index"], second["unconditional"]) == (1, False, 2, True)
    assert first["batch_size"] == 2 and second["prompt"] == ""
    assert "unconditional" in stdout


def test_prompts_file_into_a_folder(tiny, tmp_path, capsys):
    (tmp_path / "prompts.txt").write_text("lo-fi funk\n\n80s pop track with bassy drums\n")
    (tmp_path / "clips").mkdir()
    code, _, _ = run(capsys, "--prompts-file", tmp_path / "prompts.txt", "--model", tiny, "--duration", 0.3,
                     "--output", f"{tmp_path / 'clips'}/", "--format", "flac")
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "clips").iterdir())
    assert names == ["1_lo-fi_funk.flac", "1_lo-fi_funk.json", "2_80s_pop_track_with_bassy_drums.flac",
                     "2_80s_pop_track_with_bassy_drums.json"]


def test_flac_spectrogram_and_the_short_audio_fallback(tiny, tmp_path, capsys):
    out = tmp_path / "clip.flac"
    code, stdout, _ = run(capsys, "jazz song", "--model", tiny, "--duration", 0.3, "--output", out, "--spectrogram")
    assert code == 0
    info = soundfile.info(str(out))
    assert (info.format, info.frames) == ("FLAC", 0.3 * RATE)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["files"] == {"audio": "clip.flac", "spectrogram": "clip.png"}
    assert record["normalization"]["method"] == "peak"  # 0.3 s is too short to measure loudness
    assert "too short to measure loudness" in stdout


def test_prompt_audio_is_continued(tiny, tmp_path, capsys):
    t = torch.arange(8000) / 16000
    soundfile.write(str(tmp_path / "intro.wav"), torch.sin(2 * math.pi * 220 * t)[:, None].repeat(1, 2).numpy() / 2,
                    16000)  # 0.5 s of stereo at 16 kHz: resampled and mixed down by the pipeline
    code, _, _ = run(capsys, "jazz song", "--model", tiny, "--duration", 1.0, "--prompt-audio",
                     tmp_path / "intro.wav", "--output", tmp_path / "more.wav", "--greedy")
    assert code == 0
    assert soundfile.info(str(tmp_path / "more.wav")).frames == RATE
    record = json.loads((tmp_path / "more.json").read_text())
    assert record["prompt_audio"].endswith("intro.wav") and record["use_sampling"] is False


def test_a_prompt_longer_than_the_window_is_continued_from_its_end(tmp_path, capsys):
    """The README's continuation of a 10 s clip, on the demo model (8 s windows): it used to crash."""
    t = torch.arange(9 * 32000) / 32000
    soundfile.write(str(tmp_path / "intro.wav"), (0.3 * torch.sin(2 * math.pi * 220 * t)).numpy(), 32000)
    code, out, err = run(capsys, "jazz piano solo", "--model", "demo", "--duration", 9.5, "--prompt-audio",
                         tmp_path / "intro.wav", "--output", tmp_path / "more.wav", "--seed", 0)
    assert code == 0, err
    assert soundfile.info(str(tmp_path / "more.wav")).frames == 9.5 * 32000
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "longer than one window of this model (8 s): continuing from its last" in notes[0]


def test_a_stereo_model_writes_stereo_files(tmp_path, capsys):
    _, folder = save_tiny_musicgen(tmp_path / "tiny-stereo", stereo=True)
    code, _, _ = run(capsys, "80s pop track", "--model", folder, "--duration", 0.5, "--output", tmp_path / "s.wav")
    assert code == 0
    info = soundfile.info(str(tmp_path / "s.wav"))
    assert (info.channels, info.frames) == (2, 0.5 * RATE)
    assert json.loads((tmp_path / "s.json").read_text())["channels"] == 2


def bad_checkpoint(tiny: Path, folder: Path, kind: str) -> Path:
    shutil.copytree(tiny, folder)
    if kind == "corrupt":
        (folder / "model.safetensors").write_bytes(b"not a safetensors file" * 10)
    else:  # a config that does not match the tensors
        config = json.loads((folder / "config.json").read_text())
        config["decoder"]["hidden_size"] = 48
        (folder / "config.json").write_text(json.dumps(config))
    return folder


NO_MODEL = "/no/such/model/folder"  # where the model is not even loaded, the check came first
MELODY_CONFIG = "{tmp}/melody-config"  # a melody model's config.json and nothing else: loading it would fail
LONG_NAME = "a" * 252 + ".wav"  # 256 bytes: longer than any usual file system allows
LONG_SIDECAR = "a" * 251 + ".wav"  # 255 bytes, but its sidecar's name (.json) would be 256
BAD_INPUTS = {
    "zero duration": (["x", "--duration", 0, "--model", NO_MODEL], "--duration"),
    "negative duration": (["x", "--duration", -3, "--model", NO_MODEL], "--duration"),
    "nan duration": (["x", "--duration", "nan", "--model", NO_MODEL], "--duration"),
    "absurd duration": (["x", "--duration", 1e9, "--model", NO_MODEL], "--duration"),
    "not a number": (["x", "--duration", "ten"], "invalid float"),
    "no prompt": (["--model", NO_MODEL], "at least one prompt"),
    "missing model folder": (["x", "--model", NO_MODEL], "not an existing folder"),
    "unknown model name": (["x", "--model", "huge"], "known model name"),
    "uncached model offline": (["x", "--model", "facebook/musicgen-nothing"], "hf download"),
    "large offline names the demo": (["x", "--model", "large"], "hub is unreachable and the file is not cached. "
                                     "download it once with network access (e.g. `hf download facebook/musicgen-large`)"
                                     " or pass a local folder. the bundled demo model runs offline: --model demo"),
    "default model offline, demo missing": (["x"], "demo model is missing"),
    "--model demo, demo missing": (["x", "--model", "demo"], "training.demo"),
    "corrupt weights": (["x", "--model", "{corrupt}"], "safetensors"),
    "mismatched weights": (["x", "--model", "{mismatched}"], "shape"),
    "missing prompt audio": (["x", "--model", NO_MODEL, "--prompt-audio", "{tmp}/nothing.wav"], "not found"),
    "unreadable prompt audio": (["x", "--model", NO_MODEL, "--prompt-audio", "{tmp}/notes.txt"], "cannot read"),
    "prompt audio too long": (["x", "--model", NO_MODEL, "--duration", 0.1, "--prompt-audio", "{tmp}/long.wav"],
                              "must be longer"),
    "prompt audio /dev/zero": (["x", "--model", NO_MODEL, "--prompt-audio", "/dev/zero"],
                               "/dev/zero is not a regular file"),
    "prompt audio is a FIFO": (["x", "--model", NO_MODEL, "--prompt-audio", "{tmp}/fifo"], "not a regular"),
    "prompt audio is a folder": (["x", "--model", NO_MODEL, "--prompt-audio", "{tmp}/out"], "is a folder"),
    "empty prompt audio file": (["x", "--model", NO_MODEL, "--prompt-audio", "{tmp}/empty.wav"], "cannot read"),
    "prompt audio without samples": (["x", "--model", NO_MODEL, "--prompt-audio", "{tmp}/no-samples.wav"],
                                     "no audio samples"),
    "NaN in prompt audio": (["x", "--model", NO_MODEL, "--duration", 2, "--prompt-audio", "{tmp}/nan.wav"],
                            "nan.wav holds 2 NaN or infinite samples"),
    "two-hour prompt audio": (["x", "--model", NO_MODEL, "--prompt-audio", "{tmp}/two-hours.wav"],
                              "lasts 7200.00 s: --duration (10 s)"),
    "output under a file": (["x", "--model", NO_MODEL, "--output", "{tmp}/notes.txt/x.wav"], "not a folder"),
    "unknown format": (["x", "--model", NO_MODEL, "--output", "{tmp}/out/x.mp3"], ".mp3"),
    "sidecar name is a folder": (["x", "--model", NO_MODEL, "--output", "{tmp}/out/taken.wav"], "taken.json"),
    "spectrogram name is a folder": (["x", "--model", NO_MODEL, "--output", "{tmp}/out/drawn.wav", "--spectrogram"],
                                     "drawn.png: it is a folder"),
    "file name too long": (["x", "--model", NO_MODEL, "--output", "{tmp}/out/" + LONG_NAME], "limit of 255"),
    "sidecar name too long": (["x", "--model", NO_MODEL, "--output", "{tmp}/out/" + LONG_SIDECAR],
                              "a.json: its name is 256 bytes"),
    "melody on a non-melody model": (["x", "--model", "{tiny}", "--melody", "{tmp}/long.wav"], "melody model"),
    "missing melody file": (["x", "--model", MELODY_CONFIG, "--melody", "{tmp}/nothing.wav"], "not found"),
    "NaN in the melody": (["x", "--model", MELODY_CONFIG, "--melody", "{tmp}/nan.wav"], "NaN or infinite"),
    "melody longer than one window": (["x", "--model", MELODY_CONFIG, "--melody", "{tmp}/long.wav", "--duration", 40],
                                      "one window of 30 s"),
    "melody with prompt audio": (["x", "--model", NO_MODEL, "--duration", 2, "--melody", "{tmp}/long.wav",
                                  "--prompt-audio", "{tmp}/long.wav"], "cannot be combined"),
    "bad top-p": (["x", "--model", NO_MODEL, "--top-p", 1.5], "--top-p"),
    "seed too large": (["x", "--model", NO_MODEL, "--seed", 2**64], "--seed must be in [0, 2**63 - 1]"),
    "negative seed": (["x", "--model", NO_MODEL, "--seed", -1], "--seed must be in [0, 2**63 - 1]"),
    "prompt not UTF-8": (["jazz \udcff", "--model", NO_MODEL], "PROMPT 1 is not valid UTF-8 (byte 0xff)"),
    "prompts file not UTF-8": (["--prompts-file", "{tmp}/latin-1.txt", "--model", NO_MODEL],
                               "line 2 is not valid UTF-8 (byte 0xe9)"),
    "prompts file /dev/zero": (["--prompts-file", "/dev/zero", "--model", NO_MODEL], "larger than 16 MB"),
    "prompts file with NUL": (["--prompts-file", "{tmp}/nul.txt", "--model", NO_MODEL], "line 2 holds a NUL byte"),
    "no cuda": (["x", "--model", NO_MODEL, "--device", "cuda"], "cuda"),
}


def sparse_wav(path: Path, seconds: int, sample_rate: int, channels: int) -> None:
    """A 16-bit WAV whose header announces `seconds` of audio, its data a sparse hole (no disk used)."""
    data_bytes = seconds * sample_rate * channels * 2
    header = (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt " +
              struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * channels * 2, channels * 2, 16) +
              b"data" + struct.pack("<I", data_bytes))
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + data_bytes)


def no_decoding(*args, **kwargs):
    raise AssertionError("the file was decoded")


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_and_leaves_nothing(case, tiny, tmp_path, capsys, monkeypatch):
    argv, needle = BAD_INPUTS[case]
    if case == "no cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "taken.json").mkdir()
    (tmp_path / "out" / "drawn.png").mkdir()
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "latin-1.txt").write_bytes("jazz\ncaf\u00e9 music\n".encode("latin-1"))
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "nul.txt").write_bytes(b"jazz\nfunk\0\n")
    os.mkfifo(tmp_path / "fifo")
    soundfile.write(str(tmp_path / "no-samples.wav"), torch.zeros(0).numpy(), RATE)
    soundfile.write(str(tmp_path / "long.wav"), torch.zeros(RATE).numpy(), RATE)
    nan = torch.zeros(RATE)
    nan[[10, 500]] = torch.tensor([math.nan, math.inf])
    soundfile.write(str(tmp_path / "nan.wav"), nan.numpy(), RATE, subtype="FLOAT")  # float WAVs can hold NaN
    (tmp_path / "melody-config").mkdir()
    (tmp_path / "melody-config" / "config.json").write_text('{"model_type": "musicgen_melody"}')
    if "two-hour" in case:
        sparse_wav(tmp_path / "two-hours.wav", seconds=7200, sample_rate=48_000, channels=2)  # 1.4 GB, sparse
        monkeypatch.setattr(soundfile, "read", no_decoding)  # it must be refused from its header alone
    names = {"tmp": tmp_path, "tiny": tiny}
    if "demo missing" in case:
        monkeypatch.setattr(models, "DEMO_FOLDER", tmp_path / "no-demo")
    if "{corrupt}" in argv or "{mismatched}" in argv:
        kind = "corrupt" if "{corrupt}" in argv else "mismatched"
        names[kind] = bad_checkpoint(tiny, tmp_path / kind, kind)
    argv = [str(a).format(**names) if "{" in str(a) else str(a) for a in argv]
    if not any(a == "--output" for a in argv):
        argv += ["--output", f"{tmp_path / 'out'}/"]
    before = sorted(tmp_path.rglob("*"))
    code, _, err = run(capsys, *argv)
    assert code != 0
    lines = [line for line in err.splitlines() if not line.startswith("[transformers]")]  # the oracle's config
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle.lower() in lines[0].lower()
    assert "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even a temporary file


def test_audio_that_is_not_finite_is_never_written(tiny, tmp_path, capsys, monkeypatch):
    """A model that yields NaN (weights that passed every check, arithmetic that did not): one line, no files."""
    from inference import MusicGen

    monkeypatch.setattr(MusicGen, "decode", lambda self, codes: torch.full((codes.shape[0], 1, 160), float("nan")))
    code, _, err = run(capsys, "jazz", "--model", tiny, "--duration", 0.2, "--output", tmp_path / "nan.wav")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "NaN or infinite samples" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_demo_model_by_name_and_as_the_offline_fallback(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(models, "DEMO_FOLDER", tiny)  # the bundled model's place, holding the tiny model
    code, stdout, err = run(capsys, "jazz", "--model", "demo", "--duration", 0.2, "--seed", 1, "--output",
                            tmp_path / "named.wav")
    assert code == 0, err
    assert json.loads((tmp_path / "named.json").read_text())["model"] == str(tiny)
    assert "offline" not in stdout

    # No --model, no network, nothing cached: the demo model, said in one line, and recorded in the sidecar.
    code, stdout, err = run(capsys, "jazz", "--duration", 0.2, "--seed", 1, "--output", tmp_path / "fallback.wav")
    assert code == 0, err
    notes = [line for line in stdout.splitlines() if line.startswith("offline:")]
    assert len(notes) == 1 and "facebook/musicgen-small" in notes[0] and "demo model" in notes[0]
    header = stdout.split("\n", 1)[1]  # the settings, printed after the note, name the model that runs
    assert f"model      {tiny}" in header and "musicgen-small" not in header.split("loaded")[0]
    record = json.loads((tmp_path / "fallback.json").read_text())
    assert record["model"] == str(tiny) and record["fallback_from"] == "facebook/musicgen-small"
    assert soundfile.read(str(tmp_path / "fallback.wav"))[0].tolist() == \
        soundfile.read(str(tmp_path / "named.wav"))[0].tolist()


def test_melody_model_follows_a_melody_file(tmp_path, capsys):
    from tests.musicgen_oracle import save_tiny_melody_musicgen

    _, folder = save_tiny_melody_musicgen(tmp_path / "melody")
    tune = torch.sin(2 * torch.pi * 440 * torch.arange(16_000) / 16_000) * 0.5  # 1 s of A4 at 16 kHz
    soundfile.write(str(tmp_path / "tune.wav"), tune.numpy(), 16_000)
    out = tmp_path / "follow.wav"
    code, _, err = run(capsys, "jazz song", "--model", folder, "--melody", tmp_path / "tune.wav", "--duration", 0.3,
                       "--seed", 1, "--output", out)
    assert code == 0, err
    assert soundfile.info(str(out)).frames == 0.3 * RATE
    assert json.loads(out.with_suffix(".json").read_text())["melody"] == str(tmp_path / "tune.wav")


def test_the_script_runs_as_a_command(tiny, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf-cache")}
    result = subprocess.run([sys.executable, str(ROOT / "generate.py"), "80s pop track", "--model", str(tiny),
                             "--duration", "0.5", "--seed", "5", "--output", "pop.wav"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert soundfile.info(str(tmp_path / "pop.wav")).frames == 0.5 * RATE
    assert json.loads((tmp_path / "pop.json").read_text())["seed"] == 5
    assert "generating" in result.stderr  # the progress bar
    assert "real-time factor" in result.stdout and "model      " in result.stdout


def test_a_missing_output_folder_is_created(tiny, tmp_path, capsys):
    code, _, err = run(capsys, "lo-fi funk", "--model", tiny, "--duration", 0.2, "--output", f"{tmp_path}/new/clips/")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "new" / "clips").iterdir()) == ["lo-fi_funk.json", "lo-fi_funk.wav"]


def test_the_longest_file_name_and_the_largest_seed_work(tiny, tmp_path, capsys):
    out = tmp_path / ("a" * 250 + ".wav")  # 254 bytes; the sidecar's name is 255, the file system's limit
    code, _, err = run(capsys, "jazz", "--model", tiny, "--duration", 0.2, "--seed", 2**63 - 1, "--output", out,
                       "--spectrogram")
    assert code == 0, err
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".png", ".wav"]  # no temporary file left
    assert json.loads(out.with_suffix(".json").read_text())["seed"] == 2**63 - 1


def test_data_folder_is_ignored_by_git():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "check-ignore", "--quiet", "data/corpus/clip.wav"], cwd=ROOT)
    assert result.returncode == 0, "data/ (training audio) is not in .gitignore"


def test_the_research_scripts_command_works_as_typed(tiny, tmp_path, capsys, monkeypatch):
    """`--durability_seconds` (the research script's flag) is `--duration`; other unknown flags get a suggestion."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "An uplifting jazz song that makes your head shake", "--output", "output.wav",
                       "--durability_seconds", 0.3, "--model", tiny)
    assert code == 0, err
    assert soundfile.info(str(tmp_path / "output.wav")).frames == 0.3 * RATE
    code, _, err = run(capsys, "jazz", "--durabilty", 3, "--model", tiny)
    assert code == 2 and err.splitlines() == ["error: unrecognized arguments: --durabilty 3; did you mean --duration? "
                                              "(see --help)"]


def test_help_and_argument_errors_answer_before_torch_loads(tmp_path):
    """One process, as users run it: --help and every mistake found in the arguments alone leave torch unloaded."""
    script = ("import sys, generate\n"
              "codes = [generate.main(a) for a in (['--help'], ['x', '--top_k', '3'], ['x', '--duration', '0'],"
              " ['x', '--seed', '-1'], ['--prompts-file', 'missing.txt'])]\n"
              "print(codes, 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines()[-1] == "[0, 2, 1, 1, 1] False", result.stdout + result.stderr
    errors = result.stderr.splitlines()
    assert len(errors) == 4 and "did you mean --top-k?" in errors[0], errors


def test_a_sigterm_after_the_last_clip_is_one_line_and_143(tiny, tmp_path, capsys, monkeypatch):
    """SIGTERM that lands while main() restores the handler, after every clip was written: 143 and one line."""
    import signal

    real_signal = signal.signal

    def signal_then_restore(signum, handler):
        if signum == signal.SIGTERM and (tmp_path / "late.json").exists():  # main() restores the handler
            signal.raise_signal(signal.SIGTERM)
        return real_signal(signum, handler)

    monkeypatch.setattr(signal, "signal", signal_then_restore)
    code, _, err = run(capsys, "jazz", "--model", tiny, "--duration", 0.2, "--output", tmp_path / "late.wav")
    assert code == 143 and err.splitlines()[-1] == f"error: {generate.TERMINATED}", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.json", "late.wav"]  # the finished clip stays


def test_the_readmes_python_examples_run_outside_the_repository_as_it_says(tmp_path):
    """Pasted elsewhere, `from inference import MusicGen` needs the PYTHONPATH the README names."""
    section = (ROOT / "README.md").read_text().split("## Use the model from Python")[1].split("```python")[0]
    assert "export PYTHONPATH=/path/to/the/repository" in section
    code = "from inference import MusicGen; print('ok')"  # MusicGen loads torch on first use: not timed here
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    without = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "ModuleNotFoundError" in without.stderr  # what a new user met
    with_path = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                               capture_output=True, text=True, timeout=60)
    assert with_path.stdout == "ok\n", with_path.stderr


def test_thread_counts_above_the_cores_are_capped_and_oversubscription_is_said(monkeypatch):
    import threads

    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 2.0, 2.0))  # two other busy processes: 1 core free
    assert threads.choose_threads(999) == (2, "--threads 999, capped at the 2 cores; oversubscribed: only 1 of 2 "
                                              "cores are free (load average 2.0), so the threads wait for each "
                                              "other: the default (1) is faster")
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    count, why = threads.choose_threads()
    assert count == 2 and why.startswith("OMP_NUM_THREADS=64, capped at the 2 cores; oversubscribed")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.choose_threads(2) == (2, "--threads 2")  # an idle machine: as asked, no word
    # set before torch loads, oversubscribing threads sleep at once (spinning, they were 20x slower)
    script = ("import os, threads; os.getloadavg = lambda: (2.0, 2.0, 2.0); threads.available_cores = lambda: 2\n"
              "print(threads.apply_threads(2)); print(os.environ['GOMP_SPINCOUNT'])")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.endswith("OpenMP wait: sleep at once)\n0\n"), result.stdout + result.stderr

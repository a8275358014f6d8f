"""The demo model's recipe end to end at its tiny scale (`python -m training.demo --scale tiny`), and the audio
descriptors its evaluation uses, on signals whose answer is known."""

import copy
import json
import math
import subprocess

import pytest
import torch

from corpus.tones import write_synthetic_dataset
from encodec import EncodecConfig, EncodecModel, load_encodec
from inference import MusicGen
from training.demo import evaluate, recipe
from training.demo.audio_features import describe, low_band_share, onset_rate, spectral_centroid

RATE = 32_000


def tone(freq: float, seconds: float = 2.0) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE)) / RATE
    return torch.sin(2 * math.pi * freq * t)[None]  # [1, N]


def test_descriptors_of_known_signals():
    assert spectral_centroid(tone(100), RATE) == pytest.approx(100, rel=0.1)
    assert spectral_centroid(tone(3000), RATE) == pytest.approx(3000, rel=0.05)
    assert low_band_share(tone(100), RATE) > 0.99 and low_band_share(tone(3000), RATE) < 1e-3
    clicks = torch.zeros(1, 4 * RATE)
    clicks[0, torch.arange(16) * RATE // 4] = 1.0  # 4 clicks a second
    assert onset_rate(clicks, RATE) == pytest.approx(4.0, abs=0.5)
    assert onset_rate(tone(440), RATE) <= 0.5  # a steady tone: at most its start
    assert describe(torch.zeros(2, RATE), RATE) == {"onset_rate": 0.0, "spectral_centroid": 0.0,
                                                   "low_band_share": 0.0}


def test_tiny_recipe_builds_an_evaluated_model_that_generates(tmp_path, capsys):
    bundled = {p.name: p.stat().st_mtime_ns for p in recipe.BUNDLED.iterdir()}
    work = tmp_path / "work"
    real, held_out = tmp_path / "real", tmp_path / "held_out"  # "recordings": synthetic tones, no captions
    write_synthetic_dataset(real, count=2, seconds=1.0, sample_rate=16_000, seed=5)
    write_synthetic_dataset(held_out, count=2, seconds=1.0, sample_rate=16_000, seed=6)
    command = ["--scale", "tiny", "--work", str(work), "--real-music", str(real), "--held-out-music", str(held_out)]
    assert recipe.main(command) == 0
    out = work / "model"  # by default the model stays in the run folder
    assert {"config.json", "model.safetensors", "MODEL_CARD.md", "evaluation.json", "evaluation.png",
            "codec_training.png", "codec_gan_training.png", "lm_training.png"} <= {p.name for p in out.iterdir()}
    report = json.loads((out / "evaluation.json").read_text())
    assert set(report) >= {"codec", "codec_real", "lm", "prompts", "generated_high_band_flatness", "short_prompts"}
    short = report["short_prompts"]
    assert set(short["median_level_db"]) == set(evaluate.SHORT_PROMPTS)
    assert short["clips"] == report["generation"]["seeds"] * len(evaluate.SHORT_PROMPTS)
    assert set(report["lm"]) == {"true_caption", "other_style_caption", "no_caption"}
    assert report["codec_real"]["clips"] == ["synth_00000", "synth_00001"]
    card = (out / "MODEL_CARD.md").read_text()
    assert f"{short['near_silent']} of {short['clips']} clips" in card
    assert "Trained 2 steps" in card and f"| this model's codec | {report['codec']['trained']['si_snr']:.2f} |" in card
    assert "(no captions needed): 1 folders, real (2 files" in card
    # The model's codec: the fine-tuned decoder on the encoder and codebooks its LM was trained with.
    base, tuned, shipped = (load_encodec(path) for path in  # weight norm folded: the weights themselves
                            (work / "codec" / "export", work / "codec-gan" / "export", out))
    for part in ("encoder", "quantizer"):
        for name, tensor in getattr(base, part).state_dict().items():
            torch.testing.assert_close(getattr(shipped, part).state_dict()[name], tensor, msg=name)
    for name, tensor in tuned.decoder.state_dict().items():
        torch.testing.assert_close(shipped.decoder.state_dict()[name], tensor, msg=name)
    assert not all(torch.equal(base.decoder.state_dict()[name], tensor)
                   for name, tensor in tuned.decoder.state_dict().items())
    assert sorted(p.name for p in (work / "codec-data" / "train" / "real0").iterdir()) == [
        "0000_synth_00000.wav", "0001_synth_00001.wav"]
    wav = MusicGen.from_pretrained(out, device="cpu").generate("Lo-fi funk", duration=0.5, seed=0)
    assert wav.shape == (1, 1, 4000)

    # Measured against itself as the "previous" model: same tokens, so the LM losses are compared too.
    assert evaluate.main([str(out), "--corpus", str(work / "corpus"), "--seeds", "1", "--duration", "0.5",
                          "--valid-fraction", "0.34", "--before", str(out), "--out", str(tmp_path / "self")]) == 0
    again = json.loads((tmp_path / "self" / "evaluation.json").read_text())
    assert again["lm_before"] == again["lm"] and again["codec"]["before"] == again["codec"]["trained"]

    # Run again: every stage is found finished and skipped, the evaluation too; the model is left as it is.
    before = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert recipe.main(command) == 0
    printed = capsys.readouterr().out
    assert "\n$ " not in printed, printed  # no command ran
    assert (out / "model.safetensors").read_bytes() == before
    assert {p.name: p.stat().st_mtime_ns for p in recipe.BUNDLED.iterdir()} == bundled  # the bundled model: untouched


def test_only_install_writes_the_bundled_model():
    runs = recipe.ROOT / "runs"
    assert recipe.parse_arguments(["--scale", "tiny"]).out == runs / "demo-tiny" / "model"
    assert recipe.parse_arguments([]).out == runs / "demo-demo" / "model"
    assert recipe.parse_arguments(["--install"]).out == recipe.BUNDLED == recipe.ROOT / "checkpoints" / "demo"
    for refused in (["--install", "--scale", "tiny"], ["--install", "--out", "x"], ["--codec-init", "no/such"]):
        with pytest.raises(SystemExit):
            recipe.parse_arguments(refused)


def test_a_stopped_stage_ends_the_build_in_one_line(monkeypatch, tmp_path, capsys):
    def stopped(command):  # as when a training stage gets SIGTERM: it saves its checkpoint and exits 143
        raise subprocess.CalledProcessError(143, command)

    monkeypatch.setattr(recipe, "run", stopped)
    assert recipe.main(["--scale", "tiny", "--work", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == "error: a stage stopped (exit status 143); the same command continues where it stopped\n"


def test_token_mismatches_names_the_encoder_and_codebook_tensors_that_differ():
    config = EncodecConfig(sample_rate=8000, n_filters=4, dimension=16, n_q=2, bins=16, ratios=(4, 4), lstm_layers=1)
    torch.manual_seed(0)
    a = EncodecModel(config)
    b = copy.deepcopy(a)
    with torch.no_grad():
        next(b.decoder.parameters()).add_(1.0)  # a tuned decoder makes the same tokens
    assert evaluate.token_mismatches(a, b) == [] and evaluate.same_tokens(a, b)
    name, tensor = next(iter(b.quantizer.state_dict().items()))
    with torch.no_grad():
        tensor.add_(1e-3)  # state_dict shares the storage
    assert evaluate.token_mismatches(a, b) == [f"quantizer.{name}"] and not evaluate.same_tokens(a, b)


def test_the_first_codec_learns_from_the_real_music_and_can_start_from_another(monkeypatch, tmp_path, capsys):
    commands = []

    def record(command):  # the corpus stage "runs"; the first training stage stops the build
        commands.append(command)
        if "train.py" in command:
            raise subprocess.CalledProcessError(143, command)

    def data(corpus, real_music, folder, seed, valid_fraction):
        assert real_music == [tmp_path] and valid_fraction == 0.34  # the LM's split (tiny: --valid-fraction)
        return folder / "train", folder / "valid"

    monkeypatch.setattr(recipe, "run", record)
    monkeypatch.setattr(recipe, "codec_data", data)
    work = tmp_path / "work"
    assert recipe.main(["--scale", "tiny", "--work", str(work), "--real-music", str(tmp_path),
                        "--codec-init", str(tmp_path)]) == 1
    codec = commands[-1]
    assert codec[1:3] == ["train.py", "codec"] and "--train" not in codec
    given = dict(zip(codec, codec[1:], strict=False))
    assert given["--data"] == str(work / "codec-data" / "train")
    assert given["--valid-data"] == str(work / "codec-data" / "valid")
    assert given["--init-from"] == str(tmp_path) and given["--out"] == str(work / "codec")
    tiny = recipe.RECIPES["tiny"]
    assert given["--max-steps"] == str(tiny.codec_init_steps)
    assert not set(tiny.codec_shape[::2]) & set(codec)  # the given codec fixes the shape (train.py refuses both)
    assert recipe.main(["--scale", "tiny", "--work", str(work), "--real-music", str(tmp_path)]) == 1
    scratch = commands[-1]
    assert "--init-from" not in scratch and scratch[scratch.index("--n-filters") + 1] == "4"
    assert scratch[scratch.index("--max-steps") + 1] == str(tiny.codec_steps)

"""Codec training (`train.py codec`, the `training` package) on tiny models and synthetic audio, on CPU.

One short training run (module fixture) serves the learning, skipped-file, export and loss-curve tests; the
resume test makes two more runs of two steps each.
"""

import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

import train
from corpus.tones import synth_clip, write_synthetic_dataset
from encodec import EncodecConfig, EncodecModel, load_encodec
from encodec.balancer import Balancer
from training.audio_files import read_segment, scan_audio_files
from training.checkpoints import AtomicCheckpointIO, read_checkpoint
from training.codec_data import AudioSegmentDataset
from training.codec_module import balanced_surrogate
from training.codec_settings import CodecTrainSettings, resolve_settings
from training.codec_train import train_codec
from training.run import StepProgressBar

pytestmark = pytest.mark.usefixtures("one_thread")

RATE = 8000
# A codec of a few thousand parameters: hop 16 (500 frames/s), 2 codebooks of 32 codes, 0.25 s segments.
TINY = dict(sample_rate=RATE, n_filters=4, dimension=16, ratios=(4, 4), n_q=2, bins=32, lstm_layers=1,
            disc_filters=8, disc_n_ffts=(256, 512, 128), segment_seconds=0.25, batch_size=4, valid_examples=4,
            num_workers=0, progress_bar=False, accelerator="cpu", log_every=1, valid_every=1000, save_every=1000)


def tiny_settings(data: Path, out: Path, **changes) -> CodecTrainSettings:
    return replace(CodecTrainSettings(data=str(data), out=str(out), **TINY), **changes)


def write_broken_files(folder: Path) -> Path:
    """A .wav that is not audio (must be skipped and counted) and a text file (must be ignored)."""
    broken = folder / "broken.wav"
    broken.write_bytes(b"this is not a wav file" * 10)
    (folder / "notes.txt").write_text("not audio")
    return broken



@pytest.fixture(scope="module")
def learned_run(tmp_path_factory, one_thread):
    """60 steps of a tiny codec on 4 fixed clips (each exactly one segment long), validated on the same clips.

    At lr 3e-3 the multi-scale mel loss falls to about a third within 60 steps for every seed tried (0-3);
    the first 20-40 steps can be a plateau, so fewer steps would make the test depend on the seed.

    The adversarial losses are left out here: against a random discriminator their gradients are noise for the
    first hundreds of steps, and under the balancer they would take 80% of the gradient. With both weights 0
    the discriminator is left out of the step (the resume test runs the full GAN step).
    """
    root = tmp_path_factory.mktemp("learn")
    data = root / "data"
    write_synthetic_dataset(data, count=4, seconds=0.25, sample_rate=RATE, seed=1)
    broken = write_broken_files(data)
    settings = tiny_settings(data, root / "run", valid_data=str(data), max_steps=60, lr=3e-3,
                             adv_weight=0.0, feat_weight=0.0)
    with pytest.warns(UserWarning, match="skipping unreadable audio file"):
        summary = train_codec(settings)
    return settings, summary, broken


def test_reconstruction_loss_falls(learned_run):
    settings, _, _ = learned_run
    history = read_checkpoint(Path(settings.out) / "checkpoints" / "last.ckpt")["history"]
    assert [e["step"] for e in history["train"]] == list(range(1, 61))
    msspec = [e["msspec"] for e in history["train"]]
    first, last = statistics.mean(msspec[:5]), statistics.mean(msspec[-5:])
    assert last < 0.6 * first, f"multi-scale mel loss did not fall: {first:.3f} -> {last:.3f}"
    before, after = history["valid"][0], learned_run[1]["valid"][-1]
    assert (before["step"], after["step"]) == (0, 60)
    assert after["mel"] < before["mel"] and after["si_snr"] > before["si_snr"]


def test_without_adversarial_losses_the_discriminator_is_left_out(learned_run):
    settings, _, _ = learned_run
    checkpoint = read_checkpoint(Path(settings.out) / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 2 * 60  # still two Lightning steps per training step
    codec_adam, disc_adam = checkpoint["optimizer_states"]
    assert float(codec_adam["state"][0]["step"]) == 60.0
    assert disc_adam["state"] == {}  # its optimizer never received a gradient
    assert not any("adv" in e or "d_loss" in e for e in checkpoint["history"]["train"])


def test_unreadable_file_is_skipped_and_counted(learned_run):
    _, summary, broken = learned_run
    assert summary["skipped_files"] == [str(broken)]


def test_export_loads_and_matches_the_trained_codec(learned_run):
    settings, _, _ = learned_run
    out = Path(settings.out)
    exported = load_encodec(out / "export")
    assert (exported.sample_rate, exported.num_codebooks, exported.cardinality) == (RATE, 2, 32)
    checkpoint = read_checkpoint(out / "checkpoints" / "last.ckpt")
    trained = EncodecModel(EncodecConfig(**checkpoint["codec_config"]))
    trained.load_state_dict({k[len("codec."):]: v for k, v in checkpoint["state_dict"].items()
                             if k.startswith("codec.")})
    trained.eval()
    wav = torch.from_numpy(sf.read(Path(settings.data) / "synth_00000.wav", dtype="float32")[0])[None, None]
    assert wav.shape == (1, 1, 2000)
    codes = exported.encode(wav)
    assert codes.shape == (1, 2, 125)
    torch.testing.assert_close(codes, trained.encode(wav))
    torch.testing.assert_close(exported.decode(codes), trained.decode(codes), atol=1e-5, rtol=1e-4)


def test_run_writes_loss_curve_settings_and_tensorboard(learned_run):
    settings, _, _ = learned_run
    out = Path(settings.out)
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((out / "tensorboard").glob("events.out.tfevents.*"))
    assert read_checkpoint(out / "checkpoints" / "last.ckpt")["settings"] == settings.to_dict()
    assert not list((out / "checkpoints").glob("*.tmp"))


class WatchStart(Callback):
    """Records where a (resumed) run starts: Lightning's global step, Adam's step counts, the codec weights; and
    what its progress bar shows at the end (initial step, steps done, total)."""

    def on_train_start(self, trainer, pl_module):
        self.global_step = trainer.global_step
        self.adam_steps = [float(opt.state[opt.param_groups[0]["params"][0]]["step"]) for opt in trainer.optimizers]
        self.weights = {k: v.detach().clone() for k, v in pl_module.codec.state_dict().items()}

    def on_train_end(self, trainer, pl_module):  # runs before the bar's own on_train_end closes it
        (progress,) = [c for c in trainer.callbacks if isinstance(c, StepProgressBar)]
        self.bar = (progress.bar.initial, progress.bar.n, progress.bar.total)


def test_resume_continues_the_step_count_and_optimizer_state(tmp_path):
    data = tmp_path / "data"
    write_synthetic_dataset(data, count=3, seconds=0.5, sample_rate=RATE, seed=2)
    flags = ["--sample-rate", "8000", "--n-filters", "4", "--dimension", "16", "--ratios", "4,4", "--n-q", "2",
             "--bins", "32", "--lstm-layers", "1", "--disc-filters", "8", "--disc-n-ffts", "256,512,128",
             "--segment-seconds", "0.25", "--batch-size", "2", "--valid-examples", "2", "--num-workers", "0",
             "--no-progress-bar", "--accelerator", "cpu", "--log-every", "1", "--valid-every", "1000"]
    out = tmp_path / "run"
    assert train.main(["codec", "--data", str(data), "--out", str(out), "--max-steps", "2", *flags]) == 0
    last = out / "checkpoints" / "last.ckpt"
    stopped = read_checkpoint(last)
    assert stopped["global_step"] == 4  # Lightning counts the discriminator's and the codec's steps
    assert [float(s["state"][0]["step"]) for s in stopped["optimizer_states"]] == [2.0, 2.0]

    # Resume with only the new step budget: the model and data settings come from the checkpoint. A killed run
    # left a partial temporary checkpoint: the new start removes it.
    partial = out / "checkpoints" / ".step0000003.ckpt.tmp"
    partial.write_bytes(last.read_bytes()[:100])
    settings = resolve_settings({"resume": str(last), "max_steps": 4, "progress_bar": True}, stopped["settings"])
    assert (settings.n_filters, settings.ratios, settings.data) == (4, (4, 4), str(data))
    watch = WatchStart()
    train_codec(settings, callbacks=[watch])
    assert not partial.exists()
    assert watch.bar == (2, 4, 4)  # codec steps (not Lightning's two per step), counted from the resumed one
    assert watch.global_step == 4 and watch.adam_steps == [2.0, 2.0]
    for k, v in stopped["state_dict"].items():
        if k.startswith("codec."):
            torch.testing.assert_close(watch.weights[k[len("codec."):]], v, rtol=0, atol=0)
    final = read_checkpoint(last)
    assert final["global_step"] == 8
    assert [float(s["state"][0]["step"]) for s in final["optimizer_states"]] == [4.0, 4.0]
    assert [e["step"] for e in final["history"]["train"]] == [1, 2, 3, 4]
    assert final["history"]["train"][:2] == stopped["history"]["train"]


def test_sigterm_exits_non_zero_with_a_checkpoint_to_resume_and_lightning_stays_quiet(tmp_path):
    """`train.py codec` as a scheduler runs it: SIGTERM mid-run is a failure status and one line, last.ckpt holds
    the last finished step, no export; the output has no Lightning inventory, tips or deprecations, warnings are
    one line each, and the bar counts steps against --max-steps."""
    data, out = tmp_path / "data", tmp_path / "run"
    write_synthetic_dataset(data, count=2, seconds=0.25, sample_rate=RATE, seed=2)
    broken = write_broken_files(data)
    command = [sys.executable, "train.py", "codec", "--data", str(data), "--out", str(out), "--sample-rate", "8000",
               "--n-filters", "4", "--dimension", "16", "--ratios", "4,4", "--n-q", "2", "--bins", "32",
               "--lstm-layers", "1", "--disc-filters", "4", "--disc-n-ffts", "256,128", "--segment-seconds", "0.25",
               "--batch-size", "2", "--valid-examples", "2", "--num-workers", "0", "--accelerator", "cpu",
               "--max-steps", "100000", "--save-every", "2", "--valid-every", "100000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    process = subprocess.Popen(command, cwd=Path(train.__file__).parent, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((out / "checkpoints").glob("step*.ckpt")) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1].startswith("train.py codec: interrupted by SIGTERM; the last finished step")
    assert "Traceback" not in stderr
    assert read_checkpoint(out / "checkpoints" / "last.ckpt")["global_step"] >= 4
    assert not (out / "export").exists() and not (out / "summary.json").exists()
    printed = stdout + stderr
    for noise in ("GPU available", "TPU available", "litlogger", "LeafSpec", "Epoch 0"):
        assert noise not in printed
    assert re.search(r"training: .* \d+/100000 ", stderr)
    assert re.search(rf"^warning: skipping unreadable audio file {re.escape(str(broken))}: ", stderr, re.MULTILINE)
    assert "UserWarning" not in stderr and "warnings.warn(" not in stderr  # one line, no Python source line


def test_an_empty_folder_is_one_line_and_writes_nothing(tmp_path):
    empty, out = tmp_path / "empty", tmp_path / "run"
    empty.mkdir()
    with pytest.raises(SystemExit) as stop:
        train.main(["codec", "--data", str(empty), "--out", str(out)])
    assert str(stop.value) == f"train.py codec: error: no readable audio files (wav, flac, ogg) in {empty} (skipped 0)"
    assert not out.exists()


def test_settings_resolve_defaults_then_checkpoint_then_flags():
    saved = replace(CodecTrainSettings(data="a", n_filters=8, lr=1e-3), resume="old.ckpt").to_dict()
    settings = resolve_settings({"lr": 5e-4, "resume": "new.ckpt"}, saved)
    assert (settings.data, settings.n_filters, settings.lr, settings.resume) == ("a", 8, 5e-4, "new.ckpt")
    assert settings.batch_size == CodecTrainSettings().batch_size
    assert settings.codec_config().n_filters == 8 and settings.codec_config().n_q == 4  # preset's n_q


def test_settings_reject_segments_shorter_than_the_discriminator_window(tmp_path):
    with pytest.raises(ValueError, match="segment"):
        tiny_settings(tmp_path, tmp_path, segment_seconds=0.05).check()  # 400 samples < n_fft 512


def test_scan_skips_unreadable_files_and_ignores_other_files(tmp_path):
    write_synthetic_dataset(tmp_path, count=2, seconds=0.3, sample_rate=RATE)
    broken = write_broken_files(tmp_path)
    with pytest.warns(UserWarning, match="skipping unreadable audio file"):
        scan = scan_audio_files(tmp_path)
    assert [Path(f.path).name for f in scan.readable] == ["synth_00000.wav", "synth_00001.wav"]
    assert scan.skipped == [str(broken)]


def test_segments_are_resampled_mixed_down_and_padded(tmp_path):
    t = np.arange(16_000 // 10) / 16_000  # 0.1 s at 16 kHz, stereo: a 440 Hz sine left, silence right
    sf.write(tmp_path / "stereo.flac", np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], 1), 16_000)
    (file,) = scan_audio_files(tmp_path).readable
    wav = read_segment(file, 0.0, 0.25, RATE, channels=1)
    assert wav.shape == (1, 2000) and wav.dtype == torch.float32
    assert wav[0, 1000:].abs().max() == 0  # past the file's 800 samples: zero padding
    assert 0.4 < wav[0, 100:700].abs().max() < 0.6  # mean of the sine and silence, resampled
    dataset = AudioSegmentDataset([file], RATE, channels=2, segment_seconds=0.25, num_examples=3)
    assert dataset[0].shape == (2, 2000)


def test_a_file_that_fails_to_read_is_replaced_and_reported(tmp_path):
    write_synthetic_dataset(tmp_path, count=2, seconds=0.3, sample_rate=RATE)
    files = scan_audio_files(tmp_path).readable
    Path(files[0].path).unlink()  # passed the scan, then disappeared
    dataset = AudioSegmentDataset(files, RATE, 1, 0.25, num_examples=2, random_offsets=False)
    with pytest.warns(UserWarning, match="cannot read"):
        assert dataset[0].shape == (1, 2000)
    assert dataset.failed == {files[0].path}


def test_synthetic_clips_are_deterministic_bounded_and_not_silent(tmp_path):
    clip = synth_clip(np.random.default_rng(3), 0.5, RATE)
    np.testing.assert_array_equal(clip, synth_clip(np.random.default_rng(3), 0.5, RATE))
    assert clip.shape == (4000,) and 0.79 < np.abs(clip).max() <= 0.8 + 1e-9
    (path,) = write_synthetic_dataset(tmp_path, count=1, seconds=0.5, sample_rate=RATE)
    assert sf.info(str(path)).samplerate == RATE


def test_balanced_surrogate_gives_the_balancers_gradient():
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(1, 1, 5, padding=2)
    x, target = torch.randn(2, 1, 50), torch.randn(2, 1, 50)

    def losses(y):
        return {"l1": F.l1_loss(y, target), "l2": 30 * F.mse_loss(y, target), "info": y.abs().mean()}

    weights = {"l1": 1.0, "l2": 3.0}
    y = conv(x)
    Balancer(weights).backward({k: v for k, v in losses(y).items() if k in weights}, y)
    expected = [p.grad.clone() for p in conv.parameters()]
    conv.zero_grad()
    surrogate, logged, _ = balanced_surrogate(Balancer(weights), conv(x), losses)
    surrogate.backward()
    for p, g in zip(conv.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g)
    assert set(logged) == {"l1", "l2", "info"} and not logged["info"].requires_grad


class Opaque:
    """An object only the full unpickler can rebuild."""


def test_checkpoints_are_written_atomically_and_read_weights_only(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "a.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "settings": {"lr": 1.0}}, path)
    assert [p.name for p in path.parent.iterdir()] == ["a.ckpt"]  # no temporary file left behind
    assert io.load_checkpoint(path)["settings"] == {"lr": 1.0}
    torch.save({"state_dict": {}, "settings": Opaque()}, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match=r"evil.ckpt is not a checkpoint of this program: it holds a pickled object "
                                         r"\(tests.test_train_codec.Opaque\) that only running code could rebuild, "
                                         r"and checkpoints are read as data only: tensors and plain values"):
        read_checkpoint(tmp_path / "evil.ckpt")
    torch.save({"w": torch.ones(1)}, tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="no saved settings"):
        read_checkpoint(tmp_path / "plain.ckpt")


def test_decoder_fine_tune_keeps_the_encoder_and_codebooks_bit_for_bit(learned_run, tmp_path):
    """`--init-from EXPORT --train decoder`: the GAN fine-tune that keeps an LM's tokens valid. The codebooks'
    EMA updates and the quantizer's dropout must stay off through training and the validations between."""
    settings, _, _ = learned_run
    start = Path(settings.out) / "export"
    tuned = replace(CodecTrainSettings(data=settings.data, out=str(tmp_path / "gan"), **{
        k: v for k, v in TINY.items() if k not in ("sample_rate", "n_filters", "dimension", "ratios", "n_q", "bins",
                                                    "lstm_layers")}),
        valid_data=settings.data, init_from=str(start), train="decoder", max_steps=4, valid_every=2, lr=3e-3)
    assert tuned.codec_config() == load_encodec(start).config
    with pytest.warns(UserWarning, match="skipping unreadable audio file"):  # the fixture's broken.wav
        train_codec(tuned)
    before, after = load_encodec(start, inference=False), load_encodec(tmp_path / "gan" / "export", inference=False)
    for part in ("encoder", "quantizer"):
        ours, theirs = getattr(before, part).state_dict(), getattr(after, part).state_dict()
        assert all(torch.equal(ours[name], theirs[name]) for name in ours), part
    ours, theirs = before.decoder.state_dict(), after.decoder.state_dict()
    assert any(not torch.equal(ours[name], theirs[name]) for name in ours)
    history = read_checkpoint(tmp_path / "gan" / "checkpoints" / "last.ckpt")["history"]
    assert all("adv" in e and "feat" in e for e in history["train"])  # the discriminator took part
    assert [e["step"] for e in history["valid"]][:2] == [0, 2]


def test_init_from_settings_are_checked(learned_run, tmp_path):
    settings, _, _ = learned_run
    start = str(Path(settings.out) / "export")
    base = CodecTrainSettings(data=settings.data, out=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="fixes the codec's shape: drop --n-filters"):
        replace(base, init_from=start, n_filters=8).check()
    with pytest.raises(ValueError, match="--train decoder fine-tunes a trained codec's decoder: --init-from"):
        replace(base, train="decoder").check()
    with pytest.raises(ValueError, match="--train must be one of all, decoder"):
        replace(base, init_from=start, train="encoder").check()


def test_sampling_on_duration_draws_long_files_more_often(tmp_path):
    for name, seconds in (("short", 0.5), ("long", 4.5)):
        sf.write(tmp_path / f"{name}.wav", np.zeros(int(seconds * RATE), dtype=np.float32), RATE)
    files = scan_audio_files(tmp_path).readable
    torch.manual_seed(0)
    for on_duration, expected in ((True, 0.9), (False, 0.5)):
        dataset = AudioSegmentDataset(files, RATE, 1, 0.25, 1000, on_duration=on_duration)
        picks = [dataset.files[dataset._pick(i)[0]].path.endswith("long.wav") for i in range(2000)]
        assert abs(sum(picks) / len(picks) - expected) < 0.04

"""Language-model training (`train.py lm`, training/lm*.py) on a tiny codec, tiny LMs and synthetic audio, on CPU.

The codec: 4 kHz, hop 40 (100 frames/s), 2 codebooks of 16 codes, its codebooks set by k-means on the clips'
latents (random codebooks would give one code everywhere: nothing to learn). One short training run (module
fixture) serves the learning, cache, output and export tests; the resume, --init and T5 tests make their own
runs of a few steps.
"""

import json
import os
import signal
import statistics
from dataclasses import asdict, replace
from pathlib import Path

import huggingface_hub.constants
import pytest
import soundfile as sf
import torch
import transformers
from lightning.pytorch.callbacks import Callback

import train
from corpus.tones import write_synthetic_dataset
from encodec import EncodecModel, get_preset, load_encodec, save_encodec
from inference import MusicGen
from lm.conditioning import LookupTableConditioner, T5Conditioner
from tests.musicgen_oracle import WORDS, save_tiny_musicgen, word_tokenizer
from training import lm_train
from training.audio_files import AudioFile, DataError
from training.captions import read_manifest, scan_captioned_folder
from training.checkpoints import read_checkpoint
from training.lm_data import LMDataModule
from training.lm_module import condition_dropout, drop_sentences, drop_words, warmup_cosine
from training.lm_settings import LMTrainSettings, resolve_lm_settings
from training.lm_tokens import TokenCache, encode_file
from training.lm_train import build_model, load_codec, train_lm
from training.run import RunInterruptedError, StepProgressBar

RATE = 4000
CAPTIONS = ["calm piano", "loud drums", "jazz trio", "slow strings"]
TINY_LM = dict(dim=32, layers=2, heads=2, lut_bins=64, segment_seconds=0.3, batch_size=8, valid_examples=8,
               num_workers=0, progress_bar=False, accelerator="cpu", log_every=1, valid_every=1000, save_every=1000,
               sample_every=0, warmup_steps=2)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """No network and an empty Hugging Face cache, whatever the machine has."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))


def write_clips(folder: Path, count: int, seconds: float, seed: int = 1) -> list[Path]:
    """Synthetic clips at RATE, each with a sidecar caption."""
    paths = write_synthetic_dataset(folder, count=count, seconds=seconds, sample_rate=RATE, seed=seed)
    for i, path in enumerate(paths):
        path.with_suffix(".txt").write_text(CAPTIONS[i % len(CAPTIONS)])
    return paths


def make_codec(folder: Path, clips: list[Path]) -> Path:
    """A tiny codec whose codebooks are k-means centroids of the clips' latents, saved to `folder`."""
    torch.manual_seed(0)
    codec = EncodecModel(get_preset("encodec-32khz", sample_rate=RATE, n_filters=4, dimension=16, ratios=(5, 4, 2),
                                    n_q=2, bins=16, lstm_layers=1))
    wav = torch.stack([torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in clips])[:, None]  # [n, 1, N]
    with torch.no_grad():
        codec.train()(wav)  # the first training forward initialises the codebooks by k-means
    return save_encodec(codec.eval(), folder)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """(audio folder of 8 captioned one-second clips, codec folder)."""
    root = tmp_path_factory.mktemp("corpus")
    clips = write_clips(root / "data", count=8, seconds=1.0)
    return root / "data", make_codec(root / "codec", clips)


def tiny_settings(data: Path, codec: Path, out: Path, **changes) -> LMTrainSettings:
    return replace(LMTrainSettings(data=str(data), codec=str(codec), out=str(out), **TINY_LM), **changes)


@pytest.fixture(scope="module")
def learned_run(corpus, tmp_path_factory, one_thread):
    """40 steps of a tiny LM on the tokens of the 8 clips, validated on fixed windows of the same clips."""
    data, codec = corpus
    settings = tiny_settings(data, codec, tmp_path_factory.mktemp("learn") / "run", valid_data=str(data),
                             max_steps=40, lr=3e-3, sample_every=20, sample_seconds=0.2)
    return settings, train_lm(settings)


def test_loss_falls(learned_run):
    settings, summary = learned_run
    history = read_checkpoint(Path(settings.out) / "checkpoints" / "last.ckpt")["history"]
    assert [e["step"] for e in history["train"]] == list(range(1, 41))
    loss = [e["loss"] for e in history["train"]]
    first, last = statistics.mean(loss[:5]), statistics.mean(loss[-5:])
    # Seeds 0-2 give 0.59-0.65 here (30% of the batches are unconditional, and words are dropped) and 0.35-0.52
    # for the validation loss, with accuracies up by 0.45-0.65.
    assert last < 0.75 * first, f"training loss did not fall: {first:.3f} -> {last:.3f}"
    valid = summary["valid_loss"]
    assert (valid["first_step"], valid["last_step"]) == (0, 40)
    assert valid["last"] < 0.6 * valid["first"], f"validation loss did not fall: {valid}"
    before, after = summary["valid"][0], summary["valid"][-1]
    assert after["acc_q0"] > before["acc_q0"] + 0.3 and after["acc_q1"] > before["acc_q1"] + 0.3


def test_run_writes_curve_summary_settings_and_tensorboard(learned_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    settings, summary = learned_run
    out = Path(settings.out)
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["steps"] == 40 and summary["files"] == {"train": 8, "valid": 8, "uncaptioned": 0, "skipped": [],
                                                          "too_short": []}
    assert (summary["tokens"]["encoded"], summary["tokens"]["reused"]) == (8, 0)
    checkpoint = read_checkpoint(out / "checkpoints" / "last.ckpt")
    assert checkpoint["settings"] == settings.to_dict()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]
    tags = {"scalars": set(), "audio": set()}
    for events in (out / "tensorboard").glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"audio": 0})
        accumulator.Reload()
        for kind in tags:
            tags[kind] |= set(accumulator.Tags()[kind])
    assert {"train/loss", "train/ce_q1", "train/acc_q0", "train/lr", "valid/loss", "valid/acc_q1"} <= tags["scalars"]
    assert tags["audio"] == {"samples/0", "samples/1"}


def test_tokens_are_cached_once_and_reused(learned_run, corpus):
    settings, summary = learned_run
    data, codec_folder = corpus
    codec = load_encodec(codec_folder)
    cache = TokenCache(settings.cache_folder, codec)
    assert str(cache.folder) == summary["tokens"]["cache"]
    files = [AudioFile(str(p), RATE, RATE, 1) for p in sorted(data.glob("*.wav"))]
    stats = cache.update(files)
    assert (stats.encoded, stats.reused) == (0, 8)
    codes = cache.load(files[0].path)
    assert codes.shape == (2, 100) and codes.dtype == torch.int16
    assert torch.equal(codes.long(), encode_file(codec, files[0]))


def test_export_loads_and_generates(learned_run, tmp_path, capsys):
    settings, _ = learned_run
    out = Path(settings.out)
    mg = MusicGen.from_pretrained(out / "export", device="cpu", quantize=None)
    assert isinstance(mg.text, LookupTableConditioner) and mg.max_duration == settings.segment_seconds
    assert (mg.sample_rate, mg.frame_rate, mg.lm.config.num_codebooks, mg.lm.config.card) == (RATE, 100, 2, 16)
    trained = {k[len("lm."):]: v for k, v in read_checkpoint(out / "checkpoints" / "last.ckpt")["state_dict"].items()
               if k.startswith("lm.")}
    for name, tensor in mg.lm.state_dict().items():
        torch.testing.assert_close(tensor, trained[name], rtol=0, atol=0)
    assert mg.generate(["calm piano", None], duration=0.25, seed=0).shape == (2, 1, 1000)

    import generate

    wav = tmp_path / "song.wav"
    assert generate.main(["jazz trio", "--model", str(out / "export"), "--duration", "0.2", "--output", str(wav)]) == 0
    assert sf.info(str(wav)).frames == 800


def test_a_changed_file_is_encoded_again_and_another_codec_has_its_own_cache(corpus, tmp_path):
    data, codec_folder = corpus
    codec = load_encodec(codec_folder)
    paths = write_clips(tmp_path / "audio", count=2, seconds=0.5, seed=5)
    files = [AudioFile(str(p), RATE, RATE // 2, 1) for p in paths]
    cache = TokenCache(tmp_path / "tokens", codec)
    assert (cache.update(files).encoded, cache.update(files).reused) == (2, 2)
    before = cache.load(paths[0])
    write_synthetic_dataset(tmp_path / "other", count=1, seconds=0.8, sample_rate=RATE, seed=9)
    (tmp_path / "other" / "synth_00000.wav").replace(paths[0])  # new content (and size) under the same name
    files[0] = AudioFile(str(paths[0]), RATE, int(0.8 * RATE), 1)
    assert cache.load(paths[0]) is None  # stale: not served
    stats = cache.update(files)
    assert (stats.encoded, stats.reused) == (1, 1)
    assert cache.load(paths[0]).shape == (2, 80) and before.shape == (2, 50)
    with torch.no_grad():
        codec.quantizer.layers[0].codebook.embed.mul_(2)
    other = TokenCache(tmp_path / "tokens", codec)
    assert other.folder != cache.folder and other.update(files).encoded == 2


def test_codec_from_the_output_of_a_codec_training_run(tmp_path):
    """--codec accepts a `train.py codec` output folder (its export/) and its checkpoints (codec.* weights)."""
    torch.manual_seed(0)
    config = get_preset("encodec-32khz", sample_rate=RATE, n_filters=4, dimension=16, ratios=(5, 4, 2), n_q=2,
                        bins=16, lstm_layers=1)
    codec = EncodecModel(config)  # weight norm not folded, as in training
    with torch.no_grad():
        for layer in codec.quantizer.layers:
            layer.codebook.embed.normal_()
    state = {f"codec.{k}": v for k, v in codec.state_dict().items()} | {"discriminator.x": torch.zeros(1)}
    (tmp_path / "checkpoints").mkdir()
    torch.save({"settings": {}, "state_dict": state, "codec_config": asdict(config)},
               tmp_path / "checkpoints" / "last.ckpt")
    save_encodec(codec, tmp_path / "export")
    wav = torch.randn(1, 1, 800) * 0.1
    expected = codec.eval().encode(wav)
    for source in (tmp_path, tmp_path / "checkpoints" / "last.ckpt", tmp_path / "export"):
        assert torch.equal(load_codec(str(source)).encode(wav), expected)


def test_captions_from_txt_json_and_a_manifest(tmp_path):
    paths = write_synthetic_dataset(tmp_path, count=5, seconds=0.1, sample_rate=RATE)
    paths[0].with_suffix(".txt").write_text("  calm piano\n")
    paths[1].with_suffix(".json").write_text(json.dumps({"description": "loud drums", "bpm": 120}))
    paths[2].with_suffix(".json").write_text(json.dumps({"caption": "jazz trio"}))
    paths[3].with_suffix(".txt").write_text("from the txt")
    paths[3].with_suffix(".json").write_text(json.dumps({"caption": "from the json"}))
    (tmp_path / "broken.wav").write_bytes(b"not audio" * 20)
    with pytest.warns(UserWarning, match="skipping unreadable audio file"):
        scan = scan_captioned_folder(tmp_path)
    assert [scan.captions[f.path] for f in scan.files] == ["calm piano", "loud drums", "jazz trio", "from the txt", ""]
    assert scan.skipped == [str(tmp_path / "broken.wav")]

    manifest = tmp_path / "train.jsonl"
    lines = [{"path": "synth_00004.wav", "caption": "slow strings"}, {"path": str(paths[0])},
             {"path": "./synth_00002.wav", "description": "described"}]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    listed = read_manifest(manifest)
    assert [Path(f.path).name for f in listed.files] == ["synth_00004.wav", "synth_00000.wav", "synth_00002.wav"]
    assert [listed.captions[f.path] for f in listed.files] == ["slow strings", "calm piano", "described"]


def test_data_module_windows_and_files_too_short(corpus, tmp_path):
    data, codec_folder = corpus
    short = tmp_path / "short"
    write_clips(short, count=1, seconds=0.2, seed=3)
    for path in sorted(data.glob("synth_0000[0-2].*")):
        (short / f"long_{path.name}").write_bytes(path.read_bytes())
    settings = tiny_settings(short, codec_folder, tmp_path / "run", valid_data=str(short), segment_seconds=0.5)
    with pytest.warns(UserWarning, match="shorter than one window"):  # by its header: before encoding anything
        module = LMDataModule(settings, load_encodec(codec_folder))
    assert [Path(p).name for p in module.too_short] == ["synth_00000.wav"] * 2  # in both sets
    module.prepare_data()
    module.setup("fit")
    assert module.cache_stats.encoded == 3  # the short file was not encoded
    codes, caption = module.train_set[0]
    assert codes.shape == (2, 50) and codes.dtype == torch.int64 and caption in CAPTIONS
    assert module.valid_set[3][0].equal(module.valid_set[3][0])  # fixed windows
    assert module.sample_captions(4) == ["calm piano", "jazz trio", "loud drums", "calm piano"]


def test_condition_dropout_drops_whole_batches():
    captions = ["a b", "c d e", "f"]
    assert condition_dropout(captions, 0.0) == captions
    assert condition_dropout(captions, 1.0) == ["", "", ""]
    generator = torch.Generator().manual_seed(0)
    outcomes = [condition_dropout(captions, 0.3, generator) for _ in range(1000)]
    assert all(o in (captions, ["", "", ""]) for o in outcomes)
    assert 0.25 < sum(o == ["", "", ""] for o in outcomes) / 1000 < 0.35


def test_word_dropout_drops_each_word():
    text = "an uplifting jazz song that makes your head shake"
    assert drop_words(text, 0.0) == text and drop_words(text, 1.0) == ""
    generator = torch.Generator().manual_seed(0)
    kept = [drop_words(text, 0.3, generator).split() for _ in range(500)]
    words = text.split()
    assert all(k == [w for w in words if w in k] for k in kept)  # a subsequence, in order
    assert 0.65 < sum(map(len, kept)) / (500 * len(words)) < 0.75


def test_sentence_dropout_keeps_the_first_sentence():
    text = "Lo-fi funk. Medium tempo, 88 BPM, in E minor. Instruments: Electric Piano 1, Slap Bass 1."
    sentences = ["Lo-fi funk.", "Medium tempo, 88 BPM, in E minor.", "Instruments: Electric Piano 1, Slap Bass 1."]
    assert drop_sentences(text, 0.0) == text and drop_sentences(text, 1.0) == "Lo-fi funk."
    assert drop_sentences("One sentence, no full stop", 1.0) == "One sentence, no full stop"
    generator = torch.Generator().manual_seed(0)
    outcomes = [drop_sentences(text, 0.5, generator) for _ in range(1000)]
    assert all(o.startswith("Lo-fi funk.") for o in outcomes)
    assert 0.2 < outcomes.count("Lo-fi funk.") / 1000 < 0.3  # both details dropped: 0.5 * 0.5
    assert 0.45 < sum(sentences[2] in o for o in outcomes) / 1000 < 0.55
    assert {o for o in outcomes} == {"Lo-fi funk.", " ".join(sentences[:2]), " ".join(sentences[::2]), text}


def test_warmup_then_cosine_schedule():
    assert [warmup_cosine(s, 4, 104) for s in (0, 2, 4, 54, 104, 200)] == pytest.approx([0, 0.5, 1, 0.5, 0, 0])


class WatchStart(Callback):
    """Records where a (resumed) run starts: the global step, AdamW's step count, the schedule, the LM weights;
    and what its progress bar shows at the end (initial step, steps done, total)."""

    def on_train_start(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        self.global_step = trainer.global_step
        self.adam_step = float(optimizer.state[optimizer.param_groups[0]["params"][0]]["step"])
        self.schedule_step = trainer.lr_scheduler_configs[0].scheduler.last_epoch
        self.weights = {k: v.detach().clone() for k, v in pl_module.lm.state_dict().items()}

    def on_train_end(self, trainer, pl_module):  # runs before the bar's own on_train_end closes it
        (progress,) = [c for c in trainer.callbacks if isinstance(c, StepProgressBar)]
        self.bar = (progress.bar.initial, progress.bar.n, progress.bar.total)


class TerminateAfter(Callback):
    """Sends this process SIGTERM after `step` steps, as a scheduler would (Lightning's handler is active)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_then_resume_continues_the_step_count_and_optimizer_state(corpus, tmp_path, monkeypatch, capsys):
    data, codec = corpus
    out = tmp_path / "run"
    flags = ["--data", str(data), "--codec", str(codec), "--out", str(out), "--dim", "32", "--layers", "1",
             "--heads", "2", "--lut-bins", "64", "--segment-seconds", "0.2", "--batch-size", "4", "--num-workers", "0",
             "--no-progress-bar", "--accelerator", "cpu", "--log-every", "1", "--valid-every", "1000",
             "--sample-every", "0", "--valid-examples", "2", "--warmup-steps", "1"]
    # `train.py lm` stopped by SIGTERM after step 2: a failure status, one line, last.ckpt at step 2, no export.
    build_trainer = lm_train.build_trainer
    monkeypatch.setattr(lm_train, "build_trainer", lambda s, callbacks=(): build_trainer(s, [TerminateAfter(2)]))
    with pytest.raises(SystemExit) as stop:
        train.main(["lm", "--max-steps", "4", *flags])
    assert stop.value.code == 128 + signal.SIGTERM
    printed = capsys.readouterr()
    assert printed.err.startswith("train.py lm: interrupted by SIGTERM; the last finished step is in")
    assert "processes: 1 (1 node(s) x 1 device(s), SingleDeviceStrategy); batch 4 per process, 4 per step" in \
        printed.out  # the world size among the settings
    assert not (out / "export").exists()
    monkeypatch.setattr(lm_train, "build_trainer", build_trainer)
    last = out / "checkpoints" / "last.ckpt"
    stopped = read_checkpoint(last)
    assert stopped["global_step"] == 2 and float(stopped["optimizer_states"][0]["state"][0]["step"]) == 2.0

    settings = resolve_lm_settings({"resume": str(last), "progress_bar": True}, stopped["settings"])
    assert (settings.dim, settings.layers, settings.data, settings.max_steps) == (32, 1, str(data), 4)
    watch = WatchStart()
    summary = train_lm(settings, callbacks=[watch])
    assert watch.bar == (2, 4, 4)  # steps done / --max-steps, counted from the resumed step
    assert (watch.global_step, watch.adam_step, watch.schedule_step) == (2, 2.0, 2)
    for k, v in stopped["state_dict"].items():
        if k.startswith("lm."):
            torch.testing.assert_close(watch.weights[k[len("lm."):]], v, rtol=0, atol=0)
    final = read_checkpoint(last)
    assert final["global_step"] == 4 and float(final["optimizer_states"][0]["state"][0]["step"]) == 4.0
    assert [e["step"] for e in final["history"]["train"]] == [1, 2, 3, 4]
    assert final["history"]["train"][:2] == stopped["history"]["train"]
    assert (summary["tokens"]["encoded"], summary["tokens"]["reused"]) == (0, 8)  # the cache of the first run


def test_init_fine_tunes_a_transformers_checkpoint_and_exports(corpus, tmp_path):
    _, tiny = save_tiny_musicgen(tmp_path / "tiny")  # 800 Hz, 50 frames/s, 4 codebooks of 64, T5 + word tokenizer
    paths = write_clips(tmp_path / "data", count=3, seconds=0.5)
    for path, words in zip(paths, ("jazz song", "lo-fi funk", "80s pop track"), strict=True):
        path.with_suffix(".txt").write_text(words)
    out = tmp_path / "run"
    settings = LMTrainSettings(data=str(tmp_path / "data"), init=str(tiny), out=str(out), segment_seconds=0.2,
                               batch_size=2, valid_examples=2, num_workers=0, progress_bar=False, accelerator="cpu",
                               max_steps=2, lr=1e-3, warmup_steps=0, valid_every=1000, sample_every=2,
                               sample_seconds=0.1)
    summary = train_lm(settings)
    assert summary["steps"] == 2
    original = MusicGen.from_pretrained(tiny, device="cpu", quantize=None)
    tuned = MusicGen.from_pretrained(out / "export", device="cpu", quantize=None)
    assert isinstance(tuned.text, T5Conditioner) and tuned.lm.config == original.lm.config
    assert not torch.equal(tuned.lm.heads[0].weight, original.lm.heads[0].weight)  # the LM was trained
    for name, tensor in original.text.encoder.state_dict().items():  # T5 and the codec stay frozen
        torch.testing.assert_close(tuned.text.encoder.state_dict()[name], tensor, rtol=0, atol=0)
    codes = original.codec.encode(torch.zeros(1, 1, 800))
    assert torch.equal(tuned.codec.encode(torch.zeros(1, 1, 800)), codes)
    assert tuned.generate(["jazz song"], duration=0.2, seed=0).shape == (1, 1, 160)
    checkpoint = read_checkpoint(out / "checkpoints" / "last.ckpt")
    assert not any(k.startswith("text") for k in checkpoint["state_dict"])  # frozen T5: not in checkpoints

    with pytest.raises(ValueError, match="--init takes the model"):
        resolve_lm_settings({"init": str(tiny), "dim": 64})
    assert build_model(replace(settings, codec=str(tiny)))[0].config == original.lm.config  # --codec may match
    with pytest.raises(ValueError, match="is not the codec of --init"):
        build_model(replace(settings, codec=str(corpus[1])))


def test_a_new_lm_with_a_frozen_t5_text_encoder(corpus, tmp_path):
    data, codec = corpus
    t5 = tmp_path / "t5"
    config = transformers.T5Config(vocab_size=len(WORDS) + 3, d_model=24, d_kv=6, d_ff=37, num_layers=1, num_heads=4)
    torch.manual_seed(0)
    transformers.T5EncoderModel(config).save_pretrained(t5)
    word_tokenizer().save_pretrained(t5)
    settings = tiny_settings(data, codec, tmp_path / "run", text="t5", t5=str(t5), max_steps=2, valid_examples=2)
    train_lm(settings)
    mg = MusicGen.from_pretrained(tmp_path / "run" / "export", device="cpu")
    assert isinstance(mg.text, T5Conditioner) and mg.lm.config.cond_dim == 24
    assert mg.generate(["an uplifting jazz song"], duration=0.1, seed=0).shape == (1, 1, 400)


def test_command_line_errors_are_one_line(tmp_path):
    with pytest.raises(SystemExit, match="give one of --data"):
        train.main(["lm"])
    with pytest.raises(SystemExit, match="--codec is required"):
        train.main(["lm", "--data", str(tmp_path)])


@pytest.mark.parametrize("command, flags, message", [
    ("codec", ["--ratios", "0,4"], "each number of --ratios must be in [1, 1024], got 0,4"),
    ("codec", ["--n-q", "0"], "--n-q must be in [1, 1024], got 0"),
    ("codec", ["--lr", "nan"], "--lr must be in [0, 10], got nan"),
    ("codec", ["--betas", "0.5,1"], "each number of --betas must be in [0, 0.999999], got 0.5,1.0"),
    ("lm", ["--codec", "x", "--dim", "0"], "--dim must be in [1, 65536], got 0"),
    ("lm", ["--codec", "x", "--segment-seconds", "nan"], "--segment-seconds must be in [0.001, 3600], got nan"),
])
def test_every_number_of_both_training_commands_is_checked_like_a_config(tmp_path, command, flags, message):
    with pytest.raises(SystemExit) as stop:
        train.main([command, "--data", str(tmp_path), "--out", str(tmp_path / "run"), *flags])
    assert str(stop.value) == f"train.py {command}: error: {message}"
    assert not (tmp_path / "run").exists()


def test_lightnings_warnings_are_one_line_without_its_paths():
    """Lightning prints its warnings as `site-packages/...py:217: message` once loaded; the commands do not."""
    import warnings

    import lightning.pytorch.trainer.connectors.data_connector as where

    from training.run import quiet_lightning

    formatter = warnings.formatwarning
    try:
        quiet_lightning()
        shown = warnings.formatwarning("Using `DistributedSampler` ...", UserWarning, where.__file__, 217)
    finally:
        warnings.formatwarning = formatter
    assert shown == "warning: Using `DistributedSampler` ...\n"


class TerminateInFirstValidation(Callback):
    """Sends this process SIGTERM in the validation before training (e.g. while tokens are being encoded)."""

    def on_validation_batch_end(self, trainer, *args):
        if trainer.global_step == 0:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_before_training_stops_the_run(corpus, tmp_path):
    """Lightning forgets a SIGTERM received in a validation's last batch when its next call starts: the run
    must stop anyway, not train (for hours) after a scheduler asked it to stop."""
    data, codec = corpus
    settings = tiny_settings(data, codec, tmp_path / "run", max_steps=2, valid_examples=2)
    with pytest.raises(RunInterruptedError, match="interrupted by SIGTERM; no checkpoint was written"):
        train_lm(settings, callbacks=[TerminateInFirstValidation()])
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "export").exists()


def test_clips_all_shorter_than_a_window_are_one_line_and_write_nothing(corpus, tmp_path):
    data, codec = corpus
    write_clips(tmp_path / "short", count=3, seconds=0.2)
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="shorter than one window"), pytest.raises(SystemExit) as stop:
        train.main(["lm", "--data", str(tmp_path / "short"), "--codec", str(codec), "--out", str(out),
                    "--segment-seconds", "0.5", "--dim", "32", "--layers", "1", "--heads", "2"])
    assert str(stop.value) == ("train.py lm: error: no audio file of the training set is at least one window "
                               "(--segment-seconds 0.5) long; left out as too short: 3")
    assert not out.exists()  # no settings.json, tokens/ or tensorboard/


@pytest.mark.parametrize("content, problem", [
    ("[1, 2, 3]", 'expected a JSON object with a "caption", got array'),
    ('{"caption": {"nested": [1, 2]}}', '"caption" must be a string, got object'),
    ('{"description": 7}', '"description" must be a string, got number'),
    ("{not json", "Expecting property name"),
])
def test_a_caption_file_that_holds_no_text_is_refused_by_name(tmp_path, content, problem):
    (path,) = write_synthetic_dataset(tmp_path, count=1, seconds=0.1, sample_rate=RATE)
    path.with_suffix(".json").write_text(content)
    with pytest.raises(DataError, match="^caption file .*synth_00000.json: ") as error:
        scan_captioned_folder(tmp_path)
    assert problem in str(error.value)


def test_bad_captions_stop_the_command_with_one_line_naming_the_file(corpus, tmp_path):
    _, codec = corpus
    (path,) = write_synthetic_dataset(tmp_path / "data", count=1, seconds=0.5, sample_rate=RATE)
    path.with_suffix(".json").write_text("[1, 2, 3]")
    with pytest.raises(SystemExit, match=rf"^train.py lm: error: caption file {path.with_suffix('.json')}: expected"):
        train.main(["lm", "--data", str(tmp_path / "data"), "--codec", str(codec), "--out", str(tmp_path / "run")])
    manifest = tmp_path / "train.jsonl"
    manifest.write_text(json.dumps({"path": str(path), "caption": ["a", "b"]}) + "\n")
    with pytest.raises(DataError, match=rf'^{manifest}:1: "caption" must be a string, got array$'):
        read_manifest(manifest)


@pytest.mark.parametrize("line, problem", [
    ({"path": "../../../../etc/passwd", "caption": "x"}, "path '../../../../etc/passwd' leaves the manifest's folder"),
    ({"path": "/dev/zero", "caption": "x"}, "path '/dev/zero' is not a regular file"),
    ({"path": "synth_00000.wav", "caption": None}, '"caption" must be a string, got null'),
])
def test_manifest_lines_outside_its_folder_or_without_a_caption_are_refused(tmp_path, line, problem):
    write_synthetic_dataset(tmp_path / "data", count=1, seconds=0.1, sample_rate=RATE)
    manifest = tmp_path / "data" / "train.jsonl"
    manifest.write_text(json.dumps(line) + "\n")
    with pytest.raises(DataError) as error:
        read_manifest(manifest)
    assert str(error.value).startswith(f"{manifest}:1: {problem}")


def test_a_damaged_token_cache_is_encoded_again_and_never_read_outside_its_folder(corpus, tmp_path):
    data, codec_folder = corpus
    codec = load_encodec(codec_folder)
    paths = sorted(data.glob("*.wav"))[:3]
    files = [AudioFile(str(p), RATE, RATE, 1) for p in paths]
    expected = [encode_file(codec, f).to(torch.int16) for f in files]
    cache = TokenCache(tmp_path / "tokens", codec)
    assert cache.update(files).encoded == 3

    def damaged(**index_changes) -> int:
        """Files encoded again by the next update (which must warn), after every token file is checked."""
        with pytest.warns(UserWarning, match="could not be read"):
            encoded = cache.update(files).encoded
        for file, codes in zip(files, expected, strict=True):
            assert torch.equal(cache.load(file.path), codes)
        return encoded

    token = cache.folder / cache.token_name(cache.key(paths[0]))
    token.write_bytes(token.read_bytes()[:-7])  # truncated
    assert damaged() == 1
    torch.save({"codes": torch.zeros(2, 100, dtype=torch.int16)}, token)  # a pickle, not safetensors
    assert damaged() == 1
    cache.index_path.write_text("{not json")
    assert damaged() == 3
    cache.index_path.write_bytes(b"\x80\x04\x95")  # pickle bytes
    assert damaged() == 3

    # An index entry naming a file outside the cache (here: valid tokens of the right shape) is not read.
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(token.read_bytes())
    index = json.loads(cache.index_path.read_text())
    index["files"][cache.key(paths[1])]["tokens"] = os.path.relpath(outside, cache.folder)  # ../../secret...
    cache.index_path.write_text(json.dumps(index))
    assert cache.load(paths[1]) is None
    assert damaged() == 1

"""Bad MusicGen checkpoints (both layouts, T5 or word table) give one `CheckpointError` naming the culprit."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from checkpoint_io import CheckpointError, ModelNotFoundError
from encodec import EncodecModel, get_preset
from inference import MusicGen
from inference.export import save_musicgen
from lm.conditioning import LookupTableConditioner
from lm.config import LMConfig
from lm.model import MusicGenLM
from tests.codec_oracle import save_audiocraft
from tests.musicgen_oracle import save_tiny_musicgen, word_tokenizer
from tests.test_audiocraft_layout import lm_xp_cfg, to_audiocraft_lm

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    return save_tiny_musicgen(tmp_path_factory.mktemp("t5-model"))[1]


@pytest.fixture(scope="module")
def table_folder(tmp_path_factory):
    torch.manual_seed(0)
    codec = EncodecModel(get_preset("encodec-32khz", n_filters=4, dimension=16, bins=64, n_q=4)).eval()
    lm = MusicGenLM(LMConfig(dim=32, num_layers=2, num_heads=4, ffn_dim=64, card=64, cond_dim=None)).eval()
    mg = MusicGen(lm, codec, LookupTableConditioner(num_bins=50, dim=32).eval(), max_duration=8.0)
    return save_musicgen(mg, tmp_path_factory.mktemp("table") / "model")


@pytest.fixture(scope="module")
def audiocraft_folder(tmp_path_factory):
    oracle, _ = save_tiny_musicgen(tmp_path_factory.mktemp("hf"))
    t5 = tmp_path_factory.mktemp("t5")
    oracle.text_encoder.save_pretrained(t5)
    word_tokenizer().save_pretrained(t5)
    folder = tmp_path_factory.mktemp("audiocraft")
    decoder = oracle.decoder.config
    state = to_audiocraft_lm(oracle.state_dict(), decoder.num_hidden_layers, decoder.num_codebooks)
    torch.save({"best_state": state, "xp.cfg": lm_xp_cfg(oracle, str(t5)), "exported": True},
               folder / "state_dict.bin")
    save_audiocraft(oracle.audio_encoder, oracle.config.audio_encoder.to_dict(), folder / "compression_state_dict.bin")
    return folder


def edited_copy(folder, tmp_path, edit):
    """A copy of a transformers-layout folder whose tensors went through `edit(state)`."""
    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    state = load_file(copy / "model.safetensors")
    edit(state)
    save_file(state, copy / "model.safetensors")
    return copy


def set_value(name, value):
    def edit(state):
        state[name] = state[name].clone()
        state[name].view(-1)[0] = value

    return edit


# ---- issue 14 item 2: non-finite weights are refused at load, naming the tensor, in every layout

@pytest.mark.parametrize(("name", "value", "ours"), [
    ("decoder.model.decoder.layers.0.fc1.weight", float("nan"), "transformer.layers.0.linear1.weight"),
    ("audio_encoder.decoder.layers.0.conv.bias", float("nan"), "decoder.layers.0.conv.bias"),
    ("text_encoder.shared.weight", float("inf"), "shared.weight"),
    ("enc_to_dec_proj.bias", float("-inf"), "cond_proj.bias"),
])
def test_non_finite_weights_of_a_t5_model_are_named(t5_folder, tmp_path, name, value, ours):
    with pytest.raises(CheckpointError, match=rf"tensor {ours} holds NaN or infinite values"):
        MusicGen.from_pretrained(edited_copy(t5_folder, tmp_path, set_value(name, value)), device="cpu")


def test_non_finite_word_table_is_named(table_folder, tmp_path):
    folder = edited_copy(table_folder, tmp_path, set_value("text_encoder.embedding.weight", float("nan")))
    with pytest.raises(CheckpointError, match=r"text_encoder.*tensor embedding.weight holds NaN"):
        MusicGen.from_pretrained(folder, device="cpu")


@pytest.mark.parametrize(("file", "name", "ours"), [
    ("state_dict.bin", "linears.1.weight", "heads.1.weight"),
    ("compression_state_dict.bin", "decoder.model.0.conv.conv.bias", "decoder.layers.0.conv.bias"),
])
def test_non_finite_weights_of_an_audiocraft_model_are_named(audiocraft_folder, tmp_path, file, name, ours):
    copy = tmp_path / "ac"
    shutil.copytree(audiocraft_folder, copy)
    package = torch.load(copy / file, weights_only=True)
    package["best_state"][name] = package["best_state"][name].clone().fill_(float("nan"))
    torch.save(package, copy / file)
    with pytest.raises(CheckpointError, match=rf"tensor {ours} holds NaN"):
        MusicGen.from_pretrained(copy, device="cpu")


def test_integer_weights_are_refused(t5_folder, tmp_path):
    def edit(state):
        name = "decoder.lm_heads.0.weight"
        state[name] = state[name].long()

    with pytest.raises(CheckpointError, match=r"tensor heads.0.weight has dtype torch.int64"):
        MusicGen.from_pretrained(edited_copy(t5_folder, tmp_path, edit), device="cpu")


# ---- issue 14 item 4: malformed configs are refused before anything is built, naming the field

def edited_config(folder, tmp_path, edit):
    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    replaced = edit(config)  # edits in place, or returns a whole new config
    config = config if replaced is None else replaced
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def setter(*path_and_value):
    *path, field, value = path_and_value

    def edit(config):
        node = config
        for key in path:
            node = node[key]
        if value is DELETE:
            del node[field]
        else:
            node[field] = value

    return edit


DELETE = object()
BAD_CONFIGS = {
    "config is a list": (lambda config: [], "holds a JSON list, not an object"),
    "decoder is a list": (setter("decoder", []), "'decoder' section is a list"),
    "audio_encoder is a list": (setter("audio_encoder", []), "'audio_encoder' section is a list"),
    "text_encoder is a list": (setter("text_encoder", []), "'text_encoder' section is a list"),
    "no decoder": (setter("decoder", DELETE), "has no 'decoder' section"),
    "zero heads": (setter("decoder", "num_attention_heads", 0), "num_attention_heads = 0 is outside"),
    "heads not dividing": (setter("decoder", "num_attention_heads", 5), "not divisible by num_attention_heads 5"),
    "million layers": (setter("decoder", "num_hidden_layers", 1e6), "num_hidden_layers must be an integer"),
    "million layers (int)": (setter("decoder", "num_hidden_layers", 10**6), "num_hidden_layers = 1000000"),
    "string width": (setter("decoder", "hidden_size", "32"), "hidden_size must be an integer"),
    "zero ratio": (setter("audio_encoder", "upsampling_ratios", [4, 0]), "upsampling_ratios = 0 is outside"),
    "zero sampling rate": (setter("audio_encoder", "sampling_rate", 0), "sampling_rate = 0 is outside"),
    "million filters": (setter("audio_encoder", "num_filters", 10**6), "num_filters = 1000000 is outside"),
    "billion codes": (setter("audio_encoder", "codebook_size", 10**9), "codebook_size = 1000000000 is outside"),
    "100k LSTM layers": (setter("audio_encoder", "num_lstm_layers", 10**5), "num_lstm_layers = 100000 is outside"),
    "no bandwidth": (setter("audio_encoder", "target_bandwidths", []), "target_bandwidths must be a non-empty"),
    "zero window": (setter("max_duration", 0), "config.json: max_duration = 0 is outside the supported range"),
    "NaN window": (setter("max_duration", float("nan")), "config.json: max_duration must be a number, got nan"),
    "T5 vocabulary of 1e9": (setter("text_encoder", "vocab_size", 10**9), "vocab_size = 1000000000 is outside"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=list(BAD_CONFIGS))
def test_malformed_config_is_one_checkpoint_error(t5_folder, tmp_path, case):
    edit, needle = BAD_CONFIGS[case]
    with pytest.raises(CheckpointError) as err:
        MusicGen.from_pretrained(edited_config(t5_folder, tmp_path, edit), device="cpu")
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("num_bins", "needle"), [
    (10**9, "num_bins = 1000000000 is outside"),
    (10**7, r"embedding.weight: checkpoint [50, 32] vs model [10000000, 32]"),  # built on meta: nothing allocated
])
def test_huge_word_tables_are_refused_before_allocating(table_folder, tmp_path, num_bins, needle):
    folder = edited_config(table_folder, tmp_path, setter("text_encoder", "num_bins", num_bins))
    with pytest.raises(CheckpointError) as err:
        MusicGen.from_pretrained(folder, device="cpu")
    assert needle in str(err.value)


def test_a_model_larger_than_memory_is_refused_before_reading(t5_folder, monkeypatch):
    import checkpoint_io
    from inference import loading

    monkeypatch.setattr(checkpoint_io.configs, "available_memory", lambda: 1000)  # bytes: less than any part needs
    monkeypatch.setattr(loading, "read_hf_weights", None)  # the check comes before any tensor is read
    with pytest.raises(CheckpointError, match=r"describes a MusicGen model of .* than the 0.0 GiB of memory"):
        MusicGen.from_pretrained(t5_folder, device="cpu")


# ---- issue 14 item 16: loading prints no transformers warnings about the MusicGen config


def test_loading_prints_no_token_id_warnings(t5_folder):
    code = f"from inference import MusicGen; MusicGen.from_pretrained({str(t5_folder)!r}, device='cpu')"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "pad_token_id" not in result.stderr and "bos_token_id" not in result.stderr, result.stderr


# ---- issue 14 item 14: a T5 tokenizer cached without tokenizer.json (only spiece.model) loads


def test_sentencepiece_only_tokenizer_loads(tmp_path):
    import io

    import sentencepiece

    from inference.loading import load_tokenizer
    from tests.musicgen_oracle import WORDS

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([" ".join(WORDS)] * 20), model_writer=model, vocab_size=20, model_type="word",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    (tmp_path / "spiece.model").write_bytes(model.getvalue())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "extra_ids": 0, "eos_token": "</s>", "pad_token": "<pad>",
        "unk_token": "<unk>"}))
    tokenizer = load_tokenizer(str(tmp_path), {"model_type": "t5", "vocab_size": 20})
    ids = tokenizer(["jazz song", "jazz"], padding=True)["input_ids"]
    assert ids[0][-1] == 1 and ids[1][-1] == 0 and ids[0][0] == ids[1][0]  # </s> ends each text, <pad> fills


# ---- issue 14 item 12: "demo" names the bundled model in the loader itself


def test_demo_by_name(monkeypatch, tmp_path):
    from inference import loading

    mg = MusicGen.from_pretrained("demo", device="cpu")
    assert mg.lm.config == MusicGen.from_pretrained(loading.DEMO_FOLDER, device="cpu").lm.config
    monkeypatch.setitem(loading.SHORT_NAMES, "demo", str(tmp_path / "no-demo"))
    with pytest.raises(CheckpointError, match=r"demo model is missing from .*no-demo .*python -m training.demo"):
        MusicGen.from_pretrained("demo", device="cpu")


# ---- issue 14 item 13: the default model falls back to the demo only when it is truly absent


def cache_repo(cache: Path, repo_id: str, files: dict[str, Path]) -> None:
    """Lay `files` out in a Hugging Face cache as a download of `repo_id` leaves them."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name, path in files.items():
        shutil.copy(path, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)


@pytest.fixture
def offline_cache(monkeypatch, tmp_path):
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def run_cli(capsys, *argv):
    import generate

    code = generate.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cached_audiocraft_files_without_t5_name_the_cause(audiocraft_folder, offline_cache, tmp_path, capsys):
    """Only state_dict.bin and compression_state_dict.bin cached, and their T5 is not: no demo, the real cause."""
    package = torch.load(audiocraft_folder / "state_dict.bin", weights_only=True)
    xp_cfg = yaml.safe_load(package["xp.cfg"])
    xp_cfg["conditioners"]["description"]["t5"]["name"] = "t5-base"  # as the published files name it
    package["xp.cfg"] = yaml.safe_dump(xp_cfg)
    torch.save(package, tmp_path / "state_dict.bin")
    cache_repo(offline_cache, "facebook/musicgen-small", {
        "state_dict.bin": tmp_path / "state_dict.bin",
        "compression_state_dict.bin": audiocraft_folder / "compression_state_dict.bin"})
    with pytest.raises(CheckpointError, match="T5 text encoder 't5-base'") as err:
        MusicGen.from_pretrained("facebook/musicgen-small", device="cpu")
    assert not isinstance(err.value, ModelNotFoundError)
    for model in ([], ["--model", "small"]):
        code, out, err = run_cli(capsys, "jazz", *model, "--duration", 0.2, "--output", tmp_path / "x.wav")
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 1 and len(lines) == 1 and "'t5-base'" in lines[0], err
        assert "demo" not in out + err and not (tmp_path / "x.wav").exists()


def test_an_absent_model_is_model_not_found(offline_cache):
    with pytest.raises(ModelNotFoundError, match="hf download facebook/musicgen-small"):
        MusicGen.from_pretrained("facebook/musicgen-small", device="cpu")
    with pytest.raises(ModelNotFoundError, match="not an existing folder"):
        MusicGen.from_pretrained("/no/such/folder", device="cpu")


def test_fallback_and_short_names_are_recorded(t5_folder, offline_cache, tmp_path, capsys, monkeypatch):
    from frontend import models

    monkeypatch.setattr(models, "DEMO_FOLDER", t5_folder)  # the bundled model's place, holding the tiny model
    code, out, err = run_cli(capsys, "jazz", "--duration", 0.2, "--seed", 1, "--output", tmp_path / "fallback.wav")
    assert code == 0, err
    record = json.loads((tmp_path / "fallback.json").read_text())
    assert record["model"] == str(t5_folder) and record["fallback_from"] == "facebook/musicgen-small"

    cache_repo(offline_cache, "facebook/musicgen-small", {p.name: p for p in t5_folder.iterdir()})
    for model in ([], ["--model", "small"]):
        out_file = tmp_path / f"small{len(model)}.wav"
        code, out, err = run_cli(capsys, "jazz", *model, "--duration", 0.2, "--seed", 1, "--output", out_file)
        assert code == 0, err
        record = json.loads(out_file.with_suffix(".json").read_text())
        assert record["model"] == "facebook/musicgen-small" and record["fallback_from"] is None


# ---- issue 12 item 5: whether a model is a melody model is the loader's question


def test_is_melody_model_reads_the_checkpoint_config(t5_folder, audiocraft_folder, offline_cache, tmp_path):
    from inference.loading import is_melody_model
    from tests.musicgen_oracle import save_tiny_melody_musicgen

    _, melody_folder = save_tiny_melody_musicgen(tmp_path / "melody")
    assert is_melody_model(melody_folder) and not is_melody_model(t5_folder)
    assert not is_melody_model(audiocraft_folder) and not is_melody_model(audiocraft_folder / "state_dict.bin")
    package = torch.load(audiocraft_folder / "state_dict.bin", weights_only=True)
    xp_cfg = yaml.safe_load(package["xp.cfg"])
    xp_cfg["fuser"] = {"cross": [], "prepend": ["self_wav", "description"]}  # audiocraft's melody fuser
    (tmp_path / "ac").mkdir()
    torch.save({**package, "xp.cfg": yaml.safe_dump(xp_cfg)}, tmp_path / "ac" / "state_dict.bin")
    assert is_melody_model(tmp_path / "ac")
    cache_repo(offline_cache, "someone/my-tune-model", {p.name: p for p in melody_folder.iterdir()})
    assert is_melody_model("someone/my-tune-model")  # from the cached config, whatever the name says
    assert is_melody_model("melody") and not is_melody_model("small")  # neither cached: judged by name


def test_malformed_config_is_one_error_line_from_the_cli(t5_folder, offline_cache, tmp_path, capsys):
    folder = edited_config(t5_folder, tmp_path, setter("decoder", "num_attention_heads", 0))
    code, out, err = run_cli(capsys, "jazz", "--model", folder, "--duration", 0.2, "--output", tmp_path / "x.wav")
    assert code == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "num_attention_heads = 0" in lines[0], err

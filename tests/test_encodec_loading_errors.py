"""Bad checkpoints give one clear error that names the culprit, and never run code from the file."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from checkpoint_io import ModelNotFoundError
from encodec import CheckpointError, load_encodec
from tests.codec_oracle import HF_32KHZ, random_hf_codec


@pytest.fixture(scope="module")
def hf32(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf32")
    random_hf_codec(0, **HF_32KHZ).save_pretrained(folder)
    return folder


def _copy_with(folder, tmp_path, edit_state=None, edit_config=None):
    state = load_file(folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    if edit_state:
        edit_state(state)
    if edit_config:
        edit_config(config)
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_missing_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not an existing file or folder"):
        load_encodec(tmp_path / "nowhere" / "codec.bin")


def test_folder_without_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="holds no EnCodec checkpoint"):
        load_encodec(tmp_path)


def test_missing_weights_file(hf32, tmp_path):
    (tmp_path / "config.json").write_text((hf32 / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no weights found"):
        load_encodec(tmp_path)


def test_missing_and_unexpected_keys_are_named(hf32, tmp_path):
    def edit(state):
        del state["decoder.layers.15.conv.bias"]
        state["decoder.layers.99.conv.bias"] = torch.zeros(1)

    with pytest.raises(CheckpointError) as err:
        load_encodec(_copy_with(hf32, tmp_path, edit_state=edit))
    assert "missing keys: [decoder.layers.15.conv.bias]" in str(err.value)
    assert "unexpected keys: [decoder.layers.99.conv.bias]" in str(err.value)


def test_shape_mismatch_is_named(hf32, tmp_path):
    # weights of a model with 16 filters under a config that says 8
    def edit(config):
        config["num_filters"] = 16

    expected = r"wrong shape: decoder\.layers\.0\.conv\.bias: checkpoint \[128\] vs model \[256\]"
    with pytest.raises(CheckpointError, match=expected):
        load_encodec(_copy_with(hf32, tmp_path, edit_config=edit))


def test_wrong_model_type(hf32, tmp_path):
    def edit(config):
        config["model_type"] = "bert"

    with pytest.raises(CheckpointError, match="'bert' model, not an EnCodec"):
        load_encodec(_copy_with(hf32, tmp_path, edit_config=edit))


def test_corrupt_safetensors(hf32, tmp_path):
    (tmp_path / "config.json").write_text((hf32 / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read .* as safetensors"):
        load_encodec(tmp_path)


def test_corrupt_torch_file(tmp_path):
    path = tmp_path / "compression_state_dict.bin"
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(CheckpointError, match=r"is not loaded: not a torch checkpoint \("):
        load_encodec(path)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/encodec_pwned",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "compression_state_dict.bin"
    torch.save({"best_state": _Payload(), "xp.cfg": ""}, path)
    with pytest.raises(CheckpointError) as refused:
        load_encodec(path)
    assert not os.path.exists("/tmp/encodec_pwned")
    assert str(refused.value) == (  # one line of ours, not torch's page about weights_only
        f"{path} is not loaded: it holds a pickled object (posix.system) that only running code could rebuild, and "
        "checkpoints are read as data only: tensors and plain values (torch.load weights_only=True)")


def test_unknown_torch_file_format(tmp_path):
    path = tmp_path / "something.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match=r"unknown checkpoint format \(top-level keys: weights\)"):
        load_encodec(path)


def test_bare_safetensors_file_needs_its_config(hf32):
    with pytest.raises(CheckpointError, match="has no config"):
        load_encodec(hf32 / "model.safetensors")


def test_48khz_is_refused_clearly(hf32, tmp_path):
    def edit(config):
        config.update(normalize=True, chunk_length_s=1.0, overlap=0.01)

    with pytest.raises(CheckpointError, match="not supported"):
        load_encodec(_copy_with(hf32, tmp_path, edit_config=edit))


def test_uncached_repo_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="not cached"):
        load_encodec("nobody-here/no-such-codec")


def test_an_unreachable_hub_is_detected_at_once(monkeypatch):
    import socket

    import huggingface_hub

    import checkpoint_io as hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert not hub.hub_reachable()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as server:  # a local "Hub" that accepts connections, then a closed port
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        assert hub.hub_reachable()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        assert not hub.hub_reachable()


def test_non_finite_weight_is_named(hf32, tmp_path):
    def edit(state):
        name = "encoder.layers.3.conv.parametrizations.weight.original1"
        state[name] = state[name].clone()
        state[name][0, 0, 0] = float("nan")

    with pytest.raises(CheckpointError, match=r"tensor encoder.layers.3.conv.parametrizations.weight.original1 "
                                              r"holds NaN or infinite values"):
        load_encodec(_copy_with(hf32, tmp_path, edit_state=edit))


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda config: config.update(num_filters=10**6), "num_filters = 1000000 is outside"),
    (lambda config: config.update(upsampling_ratios=[8, 0]), "upsampling_ratios = 0 is outside"),
    (lambda config: config.update(sampling_rate=0), "sampling_rate = 0 is outside"),
    (lambda config: config.update(num_lstm_layers=10**5), "num_lstm_layers = 100000 is outside"),
    (lambda config: config.update(codebook_size=10**9), "codebook_size = 1000000000 is outside"),
])
def test_malformed_codec_config_names_the_field(hf32, tmp_path, edit, needle):
    with pytest.raises(CheckpointError, match=needle):
        load_encodec(_copy_with(hf32, tmp_path, edit_config=edit))


def test_config_that_is_not_an_object(hf32, tmp_path):
    folder = _copy_with(hf32, tmp_path)
    (folder / "config.json").write_text("[]")
    with pytest.raises(CheckpointError, match="holds a JSON list, not an object"):
        load_encodec(folder)


def test_a_dead_proxy_means_cache_only(monkeypatch):
    """issue 14 item 15: with HTTPS_PROXY on a closed port the Hub is unreachable, even if it answers directly."""
    import socket

    import huggingface_hub

    import checkpoint_io

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as hub, socket.socket() as proxy, socket.socket() as dead:
        for sock in (hub, proxy, dead):
            sock.bind(("127.0.0.1", 0))
        hub.listen()
        proxy.listen()  # `dead` is bound but not listening: connections to it are refused
        port = {name: sock.getsockname()[1] for name, sock in (("hub", hub), ("proxy", proxy), ("dead", dead))}
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"https://127.0.0.1:{port['hub']}")
        assert checkpoint_io.hub_reachable()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port['dead']}")
        assert not checkpoint_io.hub_reachable()
        monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{port['proxy']}")  # without a scheme, as some write it
        assert checkpoint_io.hub_reachable()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port['dead']}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the Hub host bypasses the proxy
        assert checkpoint_io.hub_reachable()


def test_audiocraft_config_missing_a_field_is_named(tmp_path):
    import yaml

    from tests.codec_oracle import save_audiocraft

    path = save_audiocraft(random_hf_codec(0, **HF_32KHZ), HF_32KHZ, tmp_path / "compression_state_dict.bin")
    package = torch.load(path, weights_only=True)
    xp_cfg = yaml.safe_load(package["xp.cfg"])
    del xp_cfg["seanet"]["n_filters"]
    torch.save({**package, "xp.cfg": yaml.safe_dump(xp_cfg)}, path)
    with pytest.raises(CheckpointError, match=r"xp.cfg: KeyError\('n_filters'\)"):
        load_encodec(path)


def test_a_codec_larger_than_memory_is_refused_before_reading(hf32, monkeypatch):
    import checkpoint_io
    from encodec import loading

    monkeypatch.setattr(checkpoint_io.configs, "available_memory", lambda: 1000)  # bytes
    monkeypatch.setattr(loading, "read_hf_weights", None)  # the check comes before any tensor is read
    with pytest.raises(CheckpointError, match=r"describes a codec of .* than the 0.0 GiB of memory available"):
        load_encodec(hf32)

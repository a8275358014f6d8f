"""The Python API checks its inputs by the command line's rules (inference/checks.py): one ValueError line that
names the argument, before any work."""

import pytest
import torch

from inference import MusicGen
from inference.checks import check_device
from tests.musicgen_oracle import save_tiny_musicgen

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mg(tmp_path_factory) -> MusicGen:
    _, folder = save_tiny_musicgen(tmp_path_factory.mktemp("tiny"))
    return MusicGen.from_pretrained(folder, device="cpu")


WAV = torch.zeros(1, 800)  # 1 s at the tiny model's 800 Hz
BAD_CALLS = {  # name: (method, args, keywords, what the one line names)
    "prompt rate 0": ("generate_continuation", (WAV, 0), {}, "prompt_sample_rate"),
    "prompt rate 1.5": ("generate_continuation", (WAV, 1.5), {}, "prompt_sample_rate"),
    "prompt not a tensor": ("generate_continuation", ([0.0] * 800, 800), {}, "prompt_wav"),
    "descriptions for another batch": ("generate_continuation", (WAV, 800), {"descriptions": ["a", "b"]},
                                       "2 descriptions for 1"),
    "a number as description": ("generate", ([123],), {}, "descriptions[0] must be a string or None, got int"),
    "bytes as description": ("generate", ([b"jazz"],), {}, "descriptions[0] is bytes"),
    "not a list": ("generate", (42,), {}, "descriptions must be a string or a list"),
    "undecodable description": ("generate", (["jazz \udcff"],), {}, "byte 0xff"),
    "no description": ("generate", ([],), {}, "at least one description"),
    "seed 1.5": ("generate", (["x"],), {"seed": 1.5}, "seed must be an integer"),
    "seed 2**64": ("generate", (["x"],), {"seed": 2**64}, "seed must be in [0, 2**63 - 1]"),
    "seed -1": ("generate", (["x"],), {"seed": -1}, "seed must be in"),
    "seed True": ("generate", (["x"],), {"seed": True}, "seed must be an integer"),
    "top_k 2.5": ("generate", (["x"],), {"top_k": 2.5}, "top_k must be an integer"),
    "top_p 1.5": ("generate", (["x"],), {"top_p": 1.5}, "top_p must be in [0, 1]"),
    "temperature 0": ("generate", (["x"],), {"temperature": 0}, "temperature must be in (0"),
    "cfg nan": ("generate", (["x"],), {"cfg_coef": float("nan")}, "cfg_coef must be a number"),
    "duration '2'": ("generate", (["x"],), {"duration": "2"}, "duration (seconds) must be a number, got '2'"),
    "duration 0": ("generate", (["x"],), {"duration": 0}, "duration (seconds) must be in (0, 3600]"),
    "duration 2 hours": ("generate_tokens", (["x"],), {"duration": 7200}, "(0, 3600]"),
    "use_sampling 'no'": ("generate_tokens", (["x"],), {"use_sampling": "no"}, "use_sampling must be True or False"),
}


@pytest.mark.parametrize("case", BAD_CALLS, ids=list(BAD_CALLS))
def test_bad_api_input_is_one_clear_value_error(mg, case, monkeypatch):
    method, args, keywords, needle = BAD_CALLS[case]
    monkeypatch.setattr(MusicGen, "_condition", lambda *a, **k: pytest.fail("the model ran"))
    with pytest.raises(ValueError) as caught:
        getattr(mg, method)(*args, **keywords)
    message = str(caught.value)
    assert needle in message and "\n" not in message, message


@pytest.mark.parametrize("device, needle", [("tpu", "'cpu', 'cuda' or 'cuda:N'"), ("gpu:0", "got 'gpu:0'"),
                                            (3.5, "got 3.5"), ("cuda:99", "cuda")])
def test_devices_this_machine_lacks_are_one_clear_value_error(device, needle):
    if device == "cuda:99" and torch.cuda.is_available():
        pytest.skip("the machine has CUDA: cuda:99 is refused for its index, checked below")
    with pytest.raises(ValueError, match="^device") as caught:
        check_device(device)
    assert needle in str(caught.value)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is available here"):
            MusicGen.from_pretrained("demo", device="cuda")  # refused before anything loads
    with pytest.raises(ValueError, match="dtype must be"):
        MusicGen.from_pretrained("demo", device="cpu", dtype="float16")


def test_the_api_and_the_command_line_accept_the_same_numbers(mg):
    """The rules are one: what the command line's checks refuse, the API refuses too, and the reverse."""
    import argparse

    from inference.cli_inputs import CliError, check_numbers

    cases = [dict(seed=-1), dict(temperature=0.0), dict(top_p=1.5), dict(cfg=-1.0), dict(duration=0.0),
             dict(seed=2**63 - 1), dict(temperature=0.5)]
    for case in cases:
        args = argparse.Namespace(**{**dict(duration=0.1, seed=0, greedy=False, top_k=1, top_p=0.0,
                                            temperature=1.0, cfg=1.0, lufs=-14.0), **case})
        try:
            check_numbers(args)
            cli_ok = True
        except CliError:
            cli_ok = False
        try:
            mg.generate_tokens(["x"], duration=args.duration, seed=args.seed, top_k=args.top_k, top_p=args.top_p,
                               temperature=args.temperature, cfg_coef=args.cfg)
            api_ok = True
        except ValueError:
            api_ok = False
        assert cli_ok == api_ok, case


def test_an_uncached_model_offline_names_the_demo_model(monkeypatch, tmp_path):
    import huggingface_hub.constants

    from checkpoint_io import ModelNotFoundError

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"hf download facebook/musicgen-small.*from_pretrained\(\"demo\"\)"):
        MusicGen.from_pretrained("facebook/musicgen-small", device="cpu")

"""The web app (app.py): its API through gradio_client and its page in a real browser, on one server this module
starts with the bundled demo model; and its clip store and request checks without a server."""

import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

import threads
from frontend.request_checks import RequestError, check_request, parse_seed

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"  # Debian's (apt-get install chromium): playwright cannot download its own here


@pytest.fixture(scope="module")
def app():
    """(url, session) of the app on a free local port."""
    pytest.importorskip("gradio")
    from frontend.app_page import build_page
    from frontend.app_session import ClipStore, GenerationSession

    store = ClipStore()
    session = GenerationSession("demo", store, threads.apply_threads())
    page = build_page(session).queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", session
    page.close()
    store.close()


def test_generate_endpoint_returns_the_clis_clip(app):
    """`/generate` by name: the first output is the final WAV, the loudness-normalised `generate()` of the same
    seed (the streamed pieces put end to end are the clip), with a FLAC of the same samples and the sidecar."""
    from gradio_client import Client

    from audio.clip import normalize_loudness

    url, session = app
    client = Client(url, verbose=False)
    outputs = client.predict(prompt="jazz piano", duration=1.0, seed=7, api_name="/generate")
    wav, sample_rate = soundfile.read(outputs[0], dtype="float32", always_2d=True)  # [N, C]
    flac, _ = soundfile.read(outputs[2][1], dtype="float32", always_2d=True)
    record = outputs[5]
    assert (sample_rate, wav.shape) == (session.mg.sample_rate, (sample_rate, 1))
    assert np.array_equal(wav, flac) and outputs[2][1].endswith(".flac")
    assert (record["prompt"], record["seed"], record["seed_was_random"], record["front_end"]) == ("jazz piano", 7,
                                                                                                   False, "app.py")
    expected = session.mg.generate(["jazz piano"], duration=1.0, seed=7)[0]  # [C, N]
    expected = normalize_loudness(expected, sample_rate, -14.0, -1.0).wav
    assert np.abs(wav.T - expected.numpy()).max() <= 1.5 / 32768  # 16-bit rounding
    assert outputs[3].endswith(".png") and "Seed **7**" in outputs[4]
    assert record["files"] == {"audio": Path(outputs[0]).name, "spectrogram": Path(outputs[3]).name,
                               "flac": Path(outputs[2][1]).name}
    again = client.predict(prompt="jazz piano", duration=0.5, api_name="/generate")  # the session's second clip
    assert [Path(path).name for path in again[6]] == [Path(outputs[0]).name] and again[5]["seed_was_random"]


@pytest.mark.parametrize("make, seed, expected", [
    (None, "abc", "Seed must be a whole number"),
    ("nan", "", "holds 5 NaN"),
    ("text", "", "The audio prompt: cannot read notes.wav as audio"),
    ("long", "", "The audio prompt long.wav lasts 3.00 s: duration (2 s) counts"),
])
def test_bad_requests_are_refused_in_one_line(app, tmp_path, make, seed, expected):
    """Refused before any generation, in one line naming the field and the upload by its name (never the
    server's temporary path)."""
    from gradio_client import Client, handle_file

    upload = None
    if make == "nan":
        upload = tmp_path / "nan.wav"
        soundfile.write(upload, np.r_[np.zeros(100), [np.nan] * 5].astype(np.float32), 32000, subtype="FLOAT")
    elif make == "text":
        upload = tmp_path / "notes.wav"
        upload.write_text("not audio")
    elif make == "long":
        upload = tmp_path / "long.wav"
        soundfile.write(upload, np.zeros(3 * 32000, np.float32), 32000)
    url, _ = app
    with pytest.raises(Exception) as refused:
        Client(url, verbose=False).predict("jazz", 2.0, seed, prompt_audio=handle_file(upload) if upload else None,
                                           api_name="/generate")
    message = str(refused.value)
    assert expected in message and "\n" not in message and "/tmp" not in message


def test_the_page_reads_no_server_path(app, tmp_path):
    """Only files the app created or that were uploaded are served (not the repository, not /etc/passwd), and a
    request naming a server file it did not upload is refused."""
    import httpx

    url, session = app
    for path in (ROOT / "README.md", Path("/etc/passwd")):
        assert httpx.get(f"{url}gradio_api/file={path}").status_code in (403, 404)
    soundfile.write(tmp_path / "intro.wav", np.zeros(8000, np.float32), 32000)  # would be continued if read
    not_uploaded = {"path": str(tmp_path / "intro.wav"), "meta": {"_type": "gradio.FileData"}}
    before = set(session.store.folder.iterdir())
    call = httpx.post(f"{url}gradio_api/call/generate", json={"data": ["jazz", 1, "", 250, 0, 1, 3, False, None,
                                                                       not_uploaded]})
    events = httpx.get(f"{url}gradio_api/call/generate/{call.json()['event_id']}", timeout=60).text
    assert events.startswith("event: error") and set(session.store.folder.iterdir()) == before


def test_stop_ends_the_generation_within_a_step(app):
    """Stop after the first piece of audio: the next request for audio raises Stopped, nothing is written, and
    the model is free again."""
    from frontend.app_session import Stopped

    _, session = app
    request = check_request("techno", 10.0, "1", 250, 0.0, 1.0, 3.0, model=session.source, max_duration=300)
    before = set(session.store.folder.iterdir())
    pieces = session.generate(request, None, "visitor")
    try:
        first = next(pieces)
        assert first.dim() == 2 and first.shape[-1] > 0
        session.stop("visitor")
        with pytest.raises(Stopped):
            next(pieces)
    finally:
        pieces.close()
    assert set(session.store.folder.iterdir()) == before and not session.lock.locked()


def test_audio_prompt_is_continued(app, tmp_path):
    """An uploaded audio prompt: the streamed pieces, put end to end, are `generate_continuation`'s audio (the
    prompt's own reconstruction first), and the sidecar names the upload."""
    _, session = app
    intro = tmp_path / "intro.wav"
    soundfile.write(intro, 0.3 * np.sin(np.arange(12000) * 2 * np.pi * 440 / 48000).astype(np.float32), 48000)
    request = check_request("jazz", 1.0, "5", 250, 0.0, 1.0, 3.0, model=session.source, max_duration=300,
                            prompt_audio=str(intro))
    *pieces, clip = session.generate(request, None, "visitor")
    expected = session.mg.generate_continuation(*request.prompt_audio, ["jazz"], duration=1.0, seed=5)[0]  # [C, N]
    assert np.abs(np.concatenate(pieces, axis=-1) - expected.numpy()).max() < 1e-4
    assert clip.record["prompt_audio"] == "intro.wav"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no {CHROMIUM} (apt-get install chromium)")
def test_page_in_a_browser(app, tmp_path):
    """Headless Chromium: type a prompt, press Generate, and an <audio> with a source appears (the final clip);
    Stop ends the next one as its audio comes. APP_SCREENSHOT=docs/app.png keeps the screenshot."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    url, _ = app
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.locator("#prompt textarea").fill("An uplifting jazz song that makes your head shake")
        page.locator("#duration input[type=number]").fill("3")
        page.locator("#generate").click()
        audio = page.locator("#final audio[src]").first
        audio.wait_for(state="attached", timeout=60_000)
        assert audio.get_attribute("src")
        assert "Seed" in page.locator("#seed-used").inner_text()
        page.get_by_text("Sampling", exact=True).click()  # the screenshot shows every control
        page.wait_for_timeout(500)  # the waveform and the spectrogram finish drawing
        page.screenshot(path=tmp_path / "app.png", full_page=True)
        page.locator("#duration input[type=number]").fill("60")  # Stop: a long one, stopped once audio comes
        page.locator("#generate").click()
        page.wait_for_function("!document.querySelector('#seed-used').innerText.includes('Seed')")  # cleared
        page.get_by_role("button", name="Stop").click()
        page.get_by_text("Stopped after").wait_for(timeout=20_000)
        browser.close()
    if target := os.environ.get("APP_SCREENSHOT"):
        shutil.copy(tmp_path / "app.png", target)


def test_clip_store_keeps_a_bounded_count_and_age(tmp_path):
    """At most max_clips clips (every file of each), none older than max_age_s."""
    from frontend.app_session import ClipStore

    store = ClipStore(max_clips=2, max_age_s=60)
    try:
        paths = []
        for i in range(3):
            paths.append(store.new_path("jazz", i))
            for suffix in (".wav", ".json"):
                paths[-1].with_suffix(suffix).write_bytes(b"")
            time.sleep(0.01)  # distinct modification times
        old = paths[1].with_suffix(".wav")
        os.utime(old, (time.time() - 120, time.time() - 120))
        store.prune(keep=2)
        assert sorted(f.name for f in store.folder.iterdir()) == sorted(f"{paths[2].stem}{s}" for s in (".json",
                                                                                                       ".wav"))
    finally:
        store.close()
    assert not store.folder.exists()


def test_request_checks_are_the_clis(tmp_path, monkeypatch):
    """The CLI's rules with the page's names; the seed field: empty is random, text must be a whole number; an
    upload over the size limit is refused from its size alone."""
    from frontend import request_checks

    big = tmp_path / "big.wav"
    soundfile.write(big, np.zeros(1000, np.float32), 8000)
    monkeypatch.setattr(request_checks, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(RequestError, match="the audio prompt big.wav is 0.0 MB, more than the limit"):
        check_request("jazz", 2.0, "", 250, 0.0, 1.0, 3.0, model="demo", max_duration=300, prompt_audio=str(big))
    assert parse_seed("") is None and parse_seed(" 42 ") == 42 and parse_seed(42.0) == 42
    cases = [(dict(top_k=-1), "top-k"), (dict(temperature=math.nan), "temperature"), (dict(seed="4.5"), "seed"),
             (dict(seed=str(2**64)), "seed must be in"), (dict(prompt="x" * 3000), "3000 characters")]
    for change, expected in cases:
        values = dict(prompt="jazz", duration=2.0, seed="", top_k=250, top_p=0.0, temperature=1.0, cfg=3.0) | change
        with pytest.raises(RequestError, match=expected):
            check_request(**values, model="demo", max_duration=300)
    assert check_request("jazz", 2, "", 250, 0.0, 1.0, 3.0, model="demo", max_duration=300).seed is None



def test_melody_model_follows_an_uploaded_melody(tmp_path):
    """A melody model: the page offers the melody upload, and a request with one is generated and recorded."""
    gr = pytest.importorskip("gradio")
    from frontend.app_page import build_page
    from frontend.app_session import Clip, ClipStore, GenerationSession
    from tests.musicgen_oracle import save_tiny_melody_musicgen

    _, folder = save_tiny_melody_musicgen(tmp_path / "melody")
    tune = tmp_path / "tune.wav"
    soundfile.write(tune, np.sin(np.arange(1600) * 0.3).astype(np.float32), 800)
    store = ClipStore()
    try:
        session = GenerationSession(str(folder), store)
        uploads = [c for c in build_page(session).blocks.values() if isinstance(c, gr.Audio) and c.label.startswith(
            "Melody")]
        assert session.is_melody and uploads[0].visible
        request = check_request("jazz", 1.0, "3", 250, 0.0, 1.0, 3.0, model=session.source, max_duration=300,
                                melody=str(tune))
        *pieces, clip = session.generate(request, None, "visitor")
        assert isinstance(clip, Clip) and clip.record["melody"] == "tune.wav"
        assert sum(piece.shape[-1] for piece in pieces) == soundfile.info(clip.wav).frames == 800
    finally:
        store.close()


def test_clip_folders_of_killed_apps_are_removed_by_the_next(tmp_path, monkeypatch):
    """An app killed with SIGKILL cannot remove its clips; the next one to start removes them, never a live app's."""
    from frontend import app_session

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"musicgen-app-{int(ended.stdout)}-abc123"  # a process that has exited
    live = tmp_path / f"musicgen-app-{os.getpid()}-def456"
    other = tmp_path / "musicgen-app-x7_q2z9k"  # not ours to judge (no process id)
    for folder in (dead, live, other):
        folder.mkdir()
        (folder / "0001_jazz_seed1.wav").write_bytes(b"RIFF")
    monkeypatch.setattr(app_session.tempfile, "tempdir", str(tmp_path))
    store = app_session.ClipStore()
    try:
        assert not dead.exists() and live.exists() and other.exists()
        assert store.folder.parent == tmp_path and store.folder.name.startswith(f"musicgen-app-{os.getpid()}-")
    finally:
        store.close()


def test_the_other_form_is_a_second_lm_sharing_text_encoder_and_codec(app):
    """The int8 toggle loads the other form on first use: a second LM only, with the same T5 and codec."""
    _, session = app
    other_form = "none" if session.default == "int8" else "int8"
    other = session.load(other_form)
    assert other.lm is not session.mg.lm and other.codec is session.mg.codec and other.text is session.mg.text
    assert other.max_duration == session.mg.max_duration and session.load(other_form) is other  # loaded once
    request = check_request("jazz", 0.5, "2", 250, 0.0, 1.0, 3.0, model=session.source, max_duration=300)
    *_, clip = session.generate(request, other_form == "int8", "visitor")
    assert clip.record["quantize"] == other_form and soundfile.info(clip.wav).frames > 0

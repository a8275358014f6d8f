"""The web app's page (Gradio): the controls of a MusicGen page, wired to a GenerationSession.

    prompt, duration, seed, sampling, int8, melody / audio prompt --Generate--> /generate
        live player (audio as it is made) -> final clip, WAV + FLAC, spectrogram, settings, earlier clips

The page holds no model logic: requests are checked by the command line's rules (frontend/request_checks.py),
generated and written by the session (frontend/app_session.py). One event, `/generate`, serves the page and the
API: its parameters are `prompt`, `duration`, `seed`, then the optional ones, and its first output is the final
clip's file, so `gradio_client.Client(url).predict("jazz", 5, 42, api_name="/generate")[0]` is a WAV path.
"""

import shutil

import gradio as gr
import torch

from audio.wav_stream import StreamingLimiter, pcm16, wav_header
from frontend.app_session import Clip, GenerationSession, Stopped
from frontend.models import DEMO_FOLDER
from frontend.outputs import OutputError
from frontend.request_checks import RequestError, check_request

EXAMPLES = [
    "An uplifting jazz song that makes your head shake",
    "Lo-fi funk with a dusty drum loop and a warm bass line",
    "A calm piano ballad, slow and tender",
    "Driving techno at 130 BPM with a rolling bass",
    "An 80s pop track with bassy drums and synth",
    "A string quartet playing a bright baroque dance",
]
MAX_DURATION = 300.0  # seconds the page offers (long form: several windows of the model)
PEAK_DB = -1.0  # the live player's true-peak ceiling (the final clip's too)
CACHE_CLEANUP = (600, 3600)  # Gradio's cache (uploads, served copies): checked every 10 min, files over 1 h removed


def build_page(session: GenerationSession) -> gr.Blocks:
    """The page of `session`'s model; `launch()` it (app.py)."""
    live_playback = shutil.which("ffmpeg") is not None  # Gradio encodes streamed audio with ffmpeg
    with gr.Blocks(title="MusicGen", delete_cache=CACHE_CLEANUP, analytics_enabled=False) as page:  # no calls home
        gr.Markdown(f"# MusicGen\n{model_line(session)}")
        with gr.Row():
            with gr.Column():
                start, stop, inputs = controls(session)
            with gr.Column():
                outputs = results(live_playback)
        history = gr.State([])  # this browser session's clips
        earlier = outputs[-1]
        start.click(make_generate(session, live_playback), inputs=[*inputs, history], outputs=[*outputs, history],
                    api_name="generate", concurrency_limit=1, concurrency_id="model").then(
            lambda clips: gr.update(visible=len(clips) > 1), inputs=history, outputs=earlier, api_name=False,
            queue=False)  # the earlier clips show once there are some
        stop.click(make_stop(session), queue=False, api_name=False)
    return page


def controls(session: GenerationSession) -> tuple[gr.Button, gr.Button, list]:
    """The left column: (Generate, Stop, the inputs of `/generate` in the order of its parameters)."""
    prompt = gr.Textbox(label="Prompt", lines=2, placeholder=EXAMPLES[0], elem_id="prompt")
    with gr.Row():
        start = gr.Button("Generate", variant="primary", elem_id="generate")
        stop = gr.Button("Stop", variant="stop")
    duration = gr.Slider(0.5, MAX_DURATION, value=10, step=0.5, label="Duration (seconds)", elem_id="duration",
                         info=f"longer than {session.mg.max_duration:g} s: in sliding windows")
    seed = gr.Textbox("", label="Seed", placeholder="empty: a random one, shown afterwards", max_lines=1)
    with gr.Accordion("Sampling", open=False):
        top_k = gr.Slider(0, 1000, value=250, step=1, label="Top-k", info="0 keeps all tokens")
        top_p = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Top-p", info="0: off (top-k decides)")
        temperature = gr.Slider(0.05, 2.0, value=1.0, step=0.05, label="Temperature")
        cfg = gr.Slider(0.0, 10.0, value=3.0, step=0.1, label="CFG", info="guidance; 1 turns it off")
    int8 = gr.Checkbox(label="int8 weights (the CPU default, 1.6-4.5x faster; off: exact float32, loaded on first use)",
                       value=session.default == "int8", visible=session.mg.device.type == "cpu")
    melody = gr.Audio(label="Melody to follow", sources=["upload"], type="filepath", visible=session.is_melody)
    prompt_audio = gr.Audio(label="Audio prompt to continue (the duration counts it)", sources=["upload"],
                            type="filepath")
    gr.Examples([[text] for text in EXAMPLES], inputs=[prompt], label="Examples")
    return start, stop, [prompt, duration, seed, top_k, top_p, temperature, cfg, int8, melody, prompt_audio]


def results(live_playback: bool) -> list:
    """The right column: the outputs of `/generate`, the final clip first."""
    live = gr.Audio(label="Live (plays while it is generated, at the model's level, peaks limited)", streaming=True,
                    autoplay=True, interactive=False, visible=live_playback, elem_id="live", buttons=["download"])
    final = gr.Audio(label="Final clip (normalised to -14 LUFS, as generate.py writes it)", type="filepath",
                     interactive=False, elem_id="final", buttons=["download"])
    seed_used = gr.Markdown(label="Seed and times", show_label=False, elem_id="seed-used")
    downloads = gr.File(label="Download (WAV, FLAC)", file_count="multiple", interactive=False)
    spectrogram = gr.Image(label="Spectrogram", type="filepath", interactive=False, buttons=["download", "fullscreen"])
    settings = gr.JSON(label="Settings (the sidecar)", max_height=300)
    earlier = gr.File(label="Earlier clips (this session)", file_count="multiple", interactive=False, visible=False)
    return [final, live, downloads, spectrogram, seed_used, settings, earlier]


def model_line(session: GenerationSession) -> str:
    """Which model the page runs, and why when it is the offline fallback."""
    mg = session.mg
    where = f"{mg.device.type}, {mg.sample_rate // 1000} kHz {'stereo' if mg.audio_channels == 2 else 'mono'}"
    name = "the bundled demo model (checkpoints/demo)" if session.source == str(DEMO_FOLDER) else session.source
    line = f"Model: **{name}** ({where})"
    if session.fallback_from:
        line += (f". {session.fallback_from} could not be downloaded and is not cached, so this is the bundled "
                 "demo model, a toy trained on synthetic music")
    return line


def make_generate(session: GenerationSession, live_playback: bool):
    """The `/generate` handler of the page and the API."""

    def generate(prompt: str, duration: float, seed: str = "", top_k: float = 250, top_p: float = 0.0,
                 temperature: float = 1.0, cfg: float = 3.0, int8: bool | None = None, melody: str | None = None,
                 prompt_audio: str | None = None, history: list | None = None, request: gr.Request = None):
        try:
            checked = check_request(prompt, duration, seed, top_k, top_p, temperature, cfg, model=session.source,
                                    max_duration=MAX_DURATION, prompt_audio=prompt_audio, melody=melody)
            visitor = request.session_hash if request is not None else ""
            limiter = StreamingLimiter(session.mg.sample_rate, PEAK_DB)  # the live player's level: as --output -

            def to_player(audio: torch.Tensor):
                return wav_bytes(audio, session.mg.sample_rate) if live_playback else gr.skip()

            made = 0  # samples streamed so far
            for item in session.generate(checked, None if int8 is None else bool(int8), visitor):
                if isinstance(item, Clip):
                    history = [*(history or []), str(item.wav)]
                    yield finished(item, history, to_player(limiter.flush()))
                    continue
                clear = None if made == 0 else gr.skip()  # the previous clip's outputs go at the first audio
                made += item.shape[-1]
                yield clear, to_player(limiter.push(item)), clear, clear, clear, clear, gr.skip(), gr.skip()
        except (RequestError, OutputError) as err:  # a refused request, a clip that could not be written
            message = str(err)
            raise gr.Error(message[:1].upper() + message[1:], print_exception=False) from None
        except Stopped:
            stopped = f"Stopped after {made / session.mg.sample_rate:.1f} s of audio (not saved)"
            yield (gr.skip(),) * 4 + (stopped,) + (gr.skip(),) * 3

    return generate


def finished(clip: Clip, history: list[str], live_end) -> tuple:
    """The outputs of a finished clip, in the order of `build_page`'s outputs (`live_end`: the stream's last
    audio)."""
    record = clip.record
    taken = record["seconds_taken"]
    seed = f"Seed **{record['seed']}**" + (" (random)" if record["seed_was_random"] else "") + \
        f": {record['audio_seconds']:.1f} s of audio in {taken['generate']:.1f} s (the first after " \
        f"{taken['first_audio']:.2f} s)"
    earlier = [path for path in history[:-1] if path_exists(path)]
    return (str(clip.wav), live_end, [str(clip.wav), str(clip.flac)], str(clip.spectrogram), seed, record,
            earlier or None, history)


def path_exists(path: str) -> bool:
    from pathlib import Path

    return Path(path).is_file()


def make_stop(session: GenerationSession):
    """The Stop button: the visitor's running generation ends after its current decoding step. (Not Gradio's
    `cancels`, which would mark every output as an error; what was played stays in the live player.)"""

    def stop(request: gr.Request):
        session.stop(request.session_hash)

    return stop


def wav_bytes(audio: torch.Tensor, sample_rate: int) -> bytes:
    """A piece of audio [C, n] as a 16-bit WAV file in memory, what Gradio's streaming player takes."""
    return wav_header(audio.shape[-1], audio.shape[0], sample_rate) + pcm16(audio)

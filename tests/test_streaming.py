"""Streaming: the codec decoded in order as frames come (inference/streaming.py) and `MusicGen.generate_stream`."""

from pathlib import Path

import pytest
import torch

from inference import MusicGen
from inference.streaming import StreamingDecoder
from tests.musicgen_oracle import save_tiny_melody_musicgen

pytestmark = pytest.mark.usefixtures("one_thread")

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"
TOLERANCE = 1e-5  # float rounding; the bound for a stream against generate() is 1e-4


def stream_decode(codec, codes: torch.Tensor, pieces: int, edge: int) -> torch.Tensor:
    decoder, out = StreamingDecoder(codec, edge), []
    for start in range(0, codes.shape[-1], pieces):
        decoder.append(codes[..., start : start + pieces])
        out.append(decoder.decode())
    return torch.cat([*out, decoder.flush()], dim=-1)


@pytest.mark.parametrize("pieces", [1, 7, 60])
def test_decoding_in_order_equals_a_whole_decode_on_the_trained_codec(demo, pieces):
    codec = demo.codec
    codes = torch.randint(0, codec.cardinality, (2, codec.num_codebooks, 80),
                          generator=torch.Generator().manual_seed(9))
    whole = codec.decode(codes)
    assert (stream_decode(codec, codes, pieces, edge=4) - whole).abs().max() < TOLERANCE
    # the test can fail: with too little context the first convolution's edges leak into the audio
    assert (stream_decode(codec, codes, pieces, edge=2) - whole).abs().max() > 1e-2


def test_the_decoder_keeps_a_bounded_state_and_holds_back_two_edges(demo):
    decoder, hop = StreamingDecoder(demo.codec), demo.codec.hop_length
    codes = torch.randint(0, demo.codec.cardinality, (1, demo.codec.num_codebooks, 400))
    emitted, edge = 0, decoder.edge
    for end in range(50, 401, 50):
        decoder.append(codes[..., end - 50 : end])
        assert decoder.decode().shape[-1] == (end - 2 * edge - emitted) * hop
        emitted = end - 2 * edge
        assert decoder.codes.shape[-1] <= 2 * edge and decoder.hidden.shape[-1] <= 2 * edge  # not the piece
    assert decoder.flush().shape[-1] == 2 * edge * hop


@pytest.mark.parametrize("duration, batch", [(2.5, 1), (1.5, 2), (9.0, 1)], ids=["one", "batch", "long-form"])
def test_the_stream_put_end_to_end_is_generate(demo, duration, batch):
    prompts = ["lo-fi funk", "baroque chorale"][:batch]
    chunks = list(demo.generate_stream(prompts, duration=duration, seed=5, chunk_seconds=1.0))
    whole = demo.generate(prompts, duration=duration, seed=5)
    streamed = torch.cat(chunks, dim=-1)
    assert streamed.shape == whole.shape
    assert (streamed - whole).abs().max() < TOLERANCE
    hop, second = demo.codec.hop_length, int(demo.frame_rate)
    assert chunks[0].shape[-1] == round(0.25 * demo.frame_rate) * hop  # a short first chunk: heard sooner
    assert all(chunk.shape[-1] == second * hop for chunk in chunks[1:-1])  # then one second each, the rest last
    assert 0 < chunks[-1].shape[-1] <= second * hop


def test_without_a_short_first_chunk_every_chunk_but_the_last_is_chunk_seconds(demo):
    chunks = list(demo.generate_stream("techno", duration=2.5, seed=1, chunk_seconds=0.5, first_chunk_seconds=None))
    hop, half = demo.codec.hop_length, int(demo.frame_rate) // 2
    assert [c.shape[-1] // hop for c in chunks] == [half] * 4 + [25]


def test_a_continuation_streams_the_prompt_first(tiny_stereo):
    prompt = torch.randn(2, tiny_stereo.audio_channels, 320, generator=torch.Generator().manual_seed(1)) * 0.3
    kwargs = dict(duration=1.2, seed=2, use_sampling=False)
    chunks = list(tiny_stereo.generate_stream(["jazz", "funk"], chunk_seconds=0.2, prompt_wav=prompt,
                                              prompt_sample_rate=800, **kwargs))
    whole = tiny_stereo.generate_continuation(prompt, 800, ["jazz", "funk"], **kwargs)
    assert chunks[0].shape[-1] >= 320 - 8 * 16  # the prompt's reconstruction, at once
    assert (torch.cat(chunks, dim=-1) - whole).abs().max() < TOLERANCE


def test_a_melody_model_streams(tmp_path):
    _, folder = save_tiny_melody_musicgen(tmp_path)
    mg = MusicGen.from_pretrained(folder, device="cpu")
    melody = torch.randn(1, 800, generator=torch.Generator().manual_seed(3))
    kwargs = dict(duration=0.4, seed=1, melody_sample_rate=800)
    streamed = torch.cat(list(mg.generate_stream("jazz", melody_wavs=melody, **kwargs)), dim=-1)
    assert (streamed - mg.generate_with_chroma("jazz", melody, **kwargs)).abs().max() < TOLERANCE


def test_stopping_a_stream_early_closes_the_progress(demo):
    stream = demo.generate_stream("techno", duration=3.0, seed=0, chunk_seconds=0.5, progress=True)
    first = next(stream)
    assert first.shape[:2] == (1, 1)
    stream.close()  # what a Stop button does: the generator ends at the next step


@pytest.mark.parametrize("chunk", [0, -1.0, float("nan"), "1"])
def test_bad_chunk_seconds_are_refused(demo, chunk):
    with pytest.raises(ValueError, match="chunk_seconds"):
        next(demo.generate_stream("techno", duration=1.0, chunk_seconds=chunk))
    with pytest.raises(ValueError, match="first_chunk_seconds"):
        next(demo.generate_stream("techno", duration=1.0, first_chunk_seconds=chunk))

"""Chunked codec decode and encode (inference/chunked.py): long pieces decode, and long audio prompts encode, in
overlapping chunks, and the chunk boundaries are invisible (within the tolerance measured in its docstring,
equal codes) against a whole decode or encode."""

from pathlib import Path

import pytest
import torch

from inference.audio_prompt import prepare_prompt
from inference.chunked import CHUNK_FRAMES, CONTEXT_FRAMES, decode_in_chunks, encode_in_chunks

pytestmark = pytest.mark.usefixtures("one_thread")

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"
TOLERANCE = 3e-5  # one step of a 16-bit file; measured on the demo codec with 8 s of context: 4e-6 to 9e-6


def random_codes(codec, frames: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(codec.cardinality, (1, codec.num_codebooks, frames), generator=generator)  # [1, K, T]


def test_chunk_boundaries_are_invisible_on_the_trained_demo_codec(demo):
    codec = demo.codec
    codes = random_codes(codec, 1300)  # 26 s: boundaries at 10 and 20 s, a short last chunk
    whole = codec.decode(codes)  # [1, 1, N]
    chunked = decode_in_chunks(codec, codes, chunk_frames=500, context_frames=CONTEXT_FRAMES)
    assert chunked.shape == whole.shape
    assert (chunked - whole).abs().max() < TOLERANCE
    # the test can fail: without context each boundary clicks (the LSTM and the convolutions restart there)
    assert (decode_in_chunks(codec, codes, chunk_frames=500, context_frames=0) - whole).abs().max() > 100 * TOLERANCE


def test_music_gen_decodes_long_pieces_in_chunks_and_short_ones_whole(demo, monkeypatch):
    calls = []
    decode = demo.codec.decode
    monkeypatch.setattr(demo.codec, "decode", lambda codes: calls.append(codes.shape[-1]) or decode(codes))
    short = random_codes(demo.codec, CHUNK_FRAMES)
    assert torch.equal(demo.decode(short), decode(short)) and calls == [CHUNK_FRAMES]  # exactly as before
    calls.clear()
    long = random_codes(demo.codec, CHUNK_FRAMES + 100, seed=1)
    wav = demo.decode(long)
    assert calls == [CHUNK_FRAMES + 100, CONTEXT_FRAMES + 100]  # each chunk with the context the piece has
    assert wav.shape == (1, 1, long.shape[-1] * demo.codec.hop_length)
    assert (wav - decode(long)).abs().max() < TOLERANCE


def test_stereo_pieces_decode_each_channel_in_chunks(tiny_stereo):
    codes = torch.cat([random_codes(tiny_stereo.codec, 2 * CHUNK_FRAMES + 7, seed) for seed in (2, 3)], dim=1)
    codes = torch.stack([codes[:, :4], codes[:, 4:]], dim=2).flatten(1, 2)  # [1, 8, T]: left/right interleaved
    wav = tiny_stereo.decode(codes)  # [1, 2, N]
    left, right = tiny_stereo.codec.decode(codes[:, 0::2]), tiny_stereo.codec.decode(codes[:, 1::2])
    assert wav.shape == (1, 2, left.shape[-1])
    assert (wav - torch.cat([left, right], dim=1)).abs().max() < TOLERANCE


class FrameCodec:
    """A codec without context: frame t of codes [B, K, T] decodes to `hop` samples of value codes[:, 0, t]."""

    hop_length = 4

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes[:, :1].float().repeat_interleave(self.hop_length, dim=-1)  # [B, 1, T * hop]


def test_every_frame_is_kept_once_in_its_place_whatever_the_chunking():
    codes = torch.randint(1000, (3, 2, 103), generator=torch.Generator().manual_seed(4))  # [3, 2, 103]
    whole = FrameCodec().decode(codes)
    for chunk, context in [(1, 0), (10, 3), (51, 51), (102, 1), (103, 0), (500, 7)]:
        assert torch.equal(decode_in_chunks(FrameCodec(), codes, chunk, context), whole), (chunk, context)


@pytest.mark.parametrize("chunk, context", [(0, 10), (10, -1)])
def test_bad_chunking_is_refused(tiny_stereo, chunk, context):
    with pytest.raises(ValueError, match="chunk_frames"):
        decode_in_chunks(tiny_stereo.codec, random_codes(tiny_stereo.codec, 20), chunk, context)


def test_long_prompts_encode_in_chunks_to_the_codes_of_a_whole_encode(tiny_stereo, monkeypatch):
    codec = tiny_stereo.codec
    wav = 0.3 * torch.randn(2, 1, 330 * codec.hop_length + 5, generator=torch.Generator().manual_seed(5))
    whole = codec.encode(wav)  # [2, 4, 331]
    assert torch.equal(encode_in_chunks(codec, wav, chunk_frames=100, context_frames=25), whole)
    assert not torch.equal(encode_in_chunks(codec, wav, chunk_frames=100, context_frames=0), whole)  # can fail
    # a continuation encodes its prompt 30 s at a time (each channel of a stereo model), never whole
    calls = []
    encode = codec.encode
    monkeypatch.setattr(codec, "encode", lambda w: calls.append(w.shape[-1] // codec.hop_length) or encode(w))
    frames = CHUNK_FRAMES + 100
    prompt = 0.1 * torch.randn(2, frames * codec.hop_length, generator=torch.Generator().manual_seed(6))
    assert prepare_prompt(codec, 2, prompt, codec.sample_rate).shape == (1, 8, frames)
    assert calls == [frames, CONTEXT_FRAMES + 100] * 2  # the first chunk with the 100 frames after it as context

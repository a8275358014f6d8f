"""Decode long code sequences, and encode long audio prompts, in overlapping chunks, so that memory depends on
the chunk, not the piece.

The SEANet decoder's activations are large (about 28 MB per second of 32 kHz audio on the published codec,
so 100 GB for an hour decoded at once). Each chunk of `chunk_frames` frames is decoded with `context_frames`
more frames on each side, and only its own samples are kept:

    codes     |----------- T frames -------------------------------------------|
    chunk 1   [ keep 0..c )+ctx                                                    (no left context at the start)
    chunk 2          ctx+[ keep c..2c )+ctx
    chunk 3                        ctx+[ keep 2c..T )                              (no right context at the end)

At the two ends of the piece a chunk sees the same edge (the same reflect padding) as a whole decode.
Inside, the convolutions have a finite receptive field (a few frames: kernel 7, dilations 1-2, and the
transposed convs' overlap), so enough context reproduces them exactly; the decoder's LSTM sees all the past,
so a chunk starting from a zero state differs from the whole decode by what that state still remembers after
`context_frames` frames. Measured (bench/chunked_decode.py, float32, max |diff| of the audio against a whole
decode of the same 60 s of random codes, chunks of 500 frames so 5 boundaries):

    context frames (50 per second)     0       5       10      25      50      100     200     400
    demo codec (trained)             2.0e-1  9.2e-2  1.0e-1  9.8e-3  5.3e-3  1.6e-3  1.0e-4  7.2e-6
    random codec, published 32 kHz   3.7e-2  3.4e-4  5.1e-5  8.9e-8  6.0e-8  6.0e-8  6.3e-8  6.0e-8

The random codec's convolutions settle within 25 frames (what is left is float rounding) and its random LSTM
forgets fast; the trained LSTM remembers for seconds. MusicGen decodes with 400 frames (8 s) of context on each
side of 30 s chunks: 7e-6 on the demo codec (with other random codes and chunks of 1500 frames: 4e-6 to 9e-6),
below the 3e-5 step of the 16-bit files we write. The published codec's trained weights cannot be measured here
(no download on the development machines): `python bench/chunked_decode.py tolerance` measures any codec.

Peak RSS of a process decoding random codes on the published-size codec (`bench/chunked_decode.py memory`,
float32, CPU): whole, 1.37 GB for 30 s and 2.22 GB for 60 s (+28 MB per second of audio); in chunks of 1500
frames with 400 of context, 1.6-1.7 GB for 60 s, 1.90 GB for 300 s and 1.95 GB for 600 s (the output itself,
128 kB per second, is all that still grows).
"""

import torch

from encodec import EncodecModel

CHUNK_FRAMES = 1500  # 30 s at 50 Hz, decoded with its context: 46 s of audio, whatever the length of the piece
CONTEXT_FRAMES = 400  # 8 s on each side; see the table above


@torch.no_grad()
def decode_in_chunks(codec: EncodecModel, codes: torch.Tensor, chunk_frames: int = CHUNK_FRAMES,
                     context_frames: int = CONTEXT_FRAMES) -> torch.Tensor:
    """Codes [B, K, T] -> audio [B, C, T * hop], decoded `chunk_frames` frames at a time.

    Args:
        codec: the codec whose `decode` turns codes [B, K, t] into audio [B, C, t * hop].
        codes: the codes of the whole piece.
        chunk_frames: frames kept from each decode; a piece of at most this many frames is decoded whole.
        context_frames: frames decoded on each side of a chunk (where the piece has them) and thrown away.
    Returns:
        audio [B, C, T * hop], equal to `codec.decode(codes)` within the tolerance measured above.
    """
    if chunk_frames < 1 or context_frames < 0:
        raise ValueError(f"need chunk_frames >= 1 and context_frames >= 0, got {chunk_frames}, {context_frames}")
    B, K, T = codes.shape
    if chunk_frames >= T:
        return codec.decode(codes)  # [B, C, T * hop]
    hop = codec.hop_length
    audio = None
    for start in range(0, T, chunk_frames):
        end = min(start + chunk_frames, T)
        lo, hi = max(0, start - context_frames), min(T, end + context_frames)  # the chunk with its context
        wav = codec.decode(codes[..., lo:hi])  # [B, C, (hi - lo) * hop]
        if audio is None:
            audio = wav.new_empty(B, wav.shape[1], T * hop)  # [B, C, T * hop]
        audio[..., start * hop : end * hop] = wav[..., (start - lo) * hop : (end - lo) * hop]
    return audio


@torch.no_grad()
def encode_in_chunks(codec: EncodecModel, wav: torch.Tensor, chunk_frames: int = CHUNK_FRAMES,
                     context_frames: int = CONTEXT_FRAMES) -> torch.Tensor:
    """Audio [B, C, N] at the codec's rate -> codes [B, K, T], T = ceil(N / hop), `chunk_frames` frames at a time.

    The mirror of `decode_in_chunks`: the encoder's activations (on the published-size codec about 36 MB per
    second of audio, so 130 GB for an hour encoded at once) are bounded by one chunk and its context. Peak RSS
    (`bench/chunked_decode.py memory --encode`, float32, CPU): whole, 0.84 GB for 10 s and 1.20 GB for 20 s; in
    chunks, 1.96 GB for 60 s and 2.40 GB for 300 s. Each chunk starts on a frame boundary, so its frames line up
    with the whole encode's; the context settles the convolutions and the encoder's LSTM as it does the
    decoder's: with 400 frames the codes equal a whole encode's (26 s of a tone and noise on the demo codec, chunks
    of 500 frames: 0 of 5200 codes differ; without context 1.5% do).
    """
    if chunk_frames < 1 or context_frames < 0:
        raise ValueError(f"need chunk_frames >= 1 and context_frames >= 0, got {chunk_frames}, {context_frames}")
    hop, N = codec.hop_length, wav.shape[-1]
    T = -(-N // hop)
    if chunk_frames >= T:
        return codec.encode(wav)  # [B, K, T]
    codes = []
    for start in range(0, T, chunk_frames):
        end = min(start + chunk_frames, T)
        lo, hi = max(0, start - context_frames), min(T, end + context_frames)  # the chunk with its context
        chunk = codec.encode(wav[..., lo * hop : hi * hop])  # [B, K, hi - lo]
        codes.append(chunk[..., start - lo : end - lo])  # [B, K, end - start]
    return torch.cat(codes, dim=-1)  # [B, K, T]

"""Decode codes into audio while they are being generated: EnCodec's decoder fed a few frames at a time.

The SEANet decoder (encodec/seanet.py) is a convolution, a unidirectional LSTM, then the up-sampling stack:

    codes --RVQ--> latents --conv k7 (pre)--> --LSTM--> --up-sampling convs (post)--> audio

The convolutions see a few frames on each side; the LSTM sees all the past. So a piece can be decoded in order,
exactly, by carrying the LSTM's state from one piece to the next and giving each convolutional part only the
frames around it:

    frames:   ... [ emitted ) [ ready to emit ) [ through the LSTM, held back ) [ held back ) | newest frame
                          e               e'                                 a                 N
    pre:  frames [a_old - EDGE, N) -> the conv's outputs for [a_old, a), a = N - EDGE (the rest may change)
    LSTM: those outputs, from the state at a_old -> the state at a
    post: LSTM outputs [e - EDGE, a) -> audio of frames [e, a - EDGE), the rest may change

Nothing is decoded twice but the 2 x EDGE frames of context of each piece, and what is kept between pieces is
bounded (EDGE frames of codes and of LSTM outputs, and the LSTM state), so the cost is linear in the length and
the memory constant. At the two ends of the piece each part pads as a whole decode does (the last `flush` decodes
to the end), so the stream equals `codec.decode` of all the codes up to float rounding: the up-sampling stack of
the published 32 kHz codec sees 1.1 frames on each side (kernels 2 x ratio and k3/k7 convolutions), and
EDGE = 4 leaves room; tests/test_streaming.py checks the equality. audiocraft streams its causal codecs with
per-layer state instead; that needs causal convolutions, which MusicGen's codec does not have.

The audio of frame t is out once frame t + 2 x EDGE exists: 160 ms of look-ahead at 50 Hz.
"""

from collections.abc import Iterator

import torch

from encodec import EncodecModel
from encodec.seanet import LSTMBlock, LSTMState

EDGE = 4  # frames of context each convolutional part reads on each side (see above)


class StreamingDecoder:
    """Codes in, audio out, in order: `append` frames as they come, `decode` what is final, `flush` at the end.

    Args:
        codec: the codec whose decoder is fed (`codec.decode(codes)` is what the pieces add up to).
        edge: frames of context of each convolutional part.
    """

    def __init__(self, codec: EncodecModel, edge: int = EDGE) -> None:
        if codec.config.norm == "time_group_norm":
            raise ValueError("this codec normalises over the whole time axis (time_group_norm): it cannot be "
                             "decoded in pieces")
        layers = codec.decoder.layers
        if not isinstance(layers[1], LSTMBlock):
            raise ValueError("the codec's decoder has no LSTM after its first convolution: not a SEANet decoder")
        self.codec, self.edge = codec, edge
        self.pre, self.lstm, self.post = layers[0], layers[1], layers[2:]
        self.codes: torch.Tensor | None = None  # [B, K, N - codes_start]: from `edge` frames before `through`
        self.codes_start = 0
        self.through = 0  # frames through the LSTM (a)
        self.state: LSTMState | None = None  # the LSTM's state after frame `through` - 1
        self.hidden: torch.Tensor | None = None  # LSTM outputs [B, D, through - hidden_start]
        self.hidden_start = 0
        self.emitted = 0  # frames whose audio is out (e)

    @property
    def frames(self) -> int:
        """N, the frames appended so far."""
        return self.codes_start + (0 if self.codes is None else self.codes.shape[-1])

    @property
    def ready(self) -> int:
        """Frames whose audio `decode` would give now."""
        return max(0, self.frames - 2 * self.edge - self.emitted)

    def append(self, codes: torch.Tensor) -> None:
        """Add the next frames, codes [B, K, t] (or one frame [B, K]); nothing is decoded yet."""
        codes = codes[..., None] if codes.dim() == 2 else codes  # [B, K, t]
        self.codes = codes if self.codes is None else torch.cat([self.codes, codes], dim=-1)

    @torch.no_grad()
    def decode(self, final: bool = False) -> torch.Tensor:
        """The audio [B, C, n * hop] of the frames that no later frame can change (all of them when `final`)."""
        if self.codes is None:
            raise ValueError("no codes were appended")
        N = self.frames
        through = N if final else max(self.through, N - self.edge)
        if through > self.through:
            self._through_lstm(through, final)
        end = through if final else max(self.emitted, through - self.edge)
        if end == self.emitted:
            return torch.zeros(self.codes.shape[0], self.codec.channels, 0, device=self.codes.device)  # nothing yet
        audio = self._post(end)  # [B, C, (end - emitted) * hop]
        self.emitted = end
        return audio

    def flush(self) -> torch.Tensor:
        """The rest of the audio: the piece ends at the last frame appended."""
        return self.decode(final=True)

    def _through_lstm(self, through: int, final: bool) -> None:
        """Run frames [self.through, through) through the first convolution and the LSTM."""
        lo = max(self.codes_start, self.through - self.edge)
        hi = self.frames if final else min(self.frames, through + self.edge)
        codes = self.codes[..., lo - self.codes_start : hi - self.codes_start]  # [B, K, hi - lo]
        x = self.pre(self.codec.quantizer.decode(codes))  # [B, D, hi - lo]
        x = x[..., self.through - lo : through - lo]  # the frames the LSTM takes now
        y, self.state = self.lstm.run(x, self.state)  # [B, D, through - self.through]
        self.hidden = y if self.hidden is None else torch.cat([self.hidden, y], dim=-1)
        self.through = through
        keep = max(self.codes_start, through - self.edge)  # the pre conv's left context next time
        self.codes, self.codes_start = self.codes[..., keep - self.codes_start :], keep

    def _post(self, end: int) -> torch.Tensor:
        """Audio [B, C, (end - emitted) * hop] of frames [emitted, end) from the LSTM outputs around them."""
        hop = self.codec.hop_length
        audio = self.hidden.clone()  # the codec's inference form runs its first ELU in place (encodec/inference.py)
        for layer in self.post:
            audio = layer(audio)  # [B, C, (through - hidden_start) * hop] at the end
        lo = (self.emitted - self.hidden_start) * hop
        out = audio[..., lo : lo + (end - self.emitted) * hop]  # [B, C, (end - emitted) * hop]
        keep = max(self.hidden_start, end - self.edge)  # the up-sampling stack's left context next time
        self.hidden, self.hidden_start = self.hidden[..., keep - self.hidden_start :], keep
        return out


def stream_audio(codec: EncodecModel, channels: int, prompt: torch.Tensor, frames: Iterator[torch.Tensor],
                 chunk_frames: int, first_frames: int | None = None) -> Iterator[torch.Tensor]:
    """Decode a piece as its frames come: audio [B, C, n * hop] each time `chunk_frames` more frames are final.

    Args:
        codec: the (mono) codec; stereo codes interleave left and right codebooks, one decoder each.
        channels: C, audio channels of the piece (1, or 2 for stereo).
        prompt: [B, K, T_prompt] codes known before the first new frame (may be empty); their audio comes first.
        frames: the new frames [B, K], in order (`inference.generation.piece_frames`).
        chunk_frames: frames of audio per chunk; a prompt's audio comes in one piece, the last chunk is what is
            left. Put end to end, the chunks are `codec.decode` of all the codes, up to float rounding.
        first_frames: frames of the first chunk of new audio (default `chunk_frames`): a short first chunk is
            heard sooner, the rest keeps the longer chunks' fewer decoder calls.
    """
    decoders = [StreamingDecoder(codec) for _ in range(channels)]

    def decode(final: bool = False) -> torch.Tensor:
        return torch.cat([d.decode(final) for d in decoders], dim=1)  # [B, C, n * hop]

    def append(codes: torch.Tensor) -> None:  # [B, K, t] or [B, K]
        for c, decoder in enumerate(decoders):
            decoder.append(codes[:, c::channels])  # stereo: [q0_L, q0_R, q1_L, ...] -> this channel's codebooks

    wanted = chunk_frames if first_frames is None else first_frames  # frames of the next chunk
    if prompt.shape[-1] > 0:
        append(prompt)
        if decoders[0].ready >= wanted:
            yield decode()
    for frame in frames:
        append(frame)
        if decoders[0].ready >= wanted:
            yield decode()
            wanted = chunk_frames
    yield decode(final=True)

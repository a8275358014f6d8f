"""Audio prompts: any waveform -> the codes a MusicGen model continues from."""

import torch

from encodec import EncodecModel
from inference.audio import check_finite, convert_channels, resample
from inference.chunked import encode_in_chunks


@torch.no_grad()
def prepare_prompt(codec: EncodecModel, channels: int, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Encode a prompt for a model of `channels` audio channels. Returns codes [B, K, T_prompt].

    Args:
        codec: the model's (mono) codec.
        channels: 1, or 2 for stereo models, whose codes interleave left and right: [l0, r0, l1, r1, ...].
        wav: [B, C, N] or [C, N] audio in [-1, 1].
        sample_rate: the prompt's rate; it is resampled to the codec's.

    A prompt holding NaN or infinite samples is refused (ValueError): encoded, it would silently become
    codes that have nothing to do with it.
    """
    if wav.dim() == 2:
        wav = wav[None]
    if wav.dim() != 3 or wav.shape[-1] == 0:
        raise ValueError(f"the audio prompt must be [B, C, N] or [C, N] with N > 0, got {list(wav.shape)}")
    check_finite(wav, "the audio prompt")
    device = next(codec.parameters()).device
    wav = resample(wav.float().to(device), sample_rate, codec.sample_rate)
    wav = convert_channels(wav, channels)  # [B, channels, N']
    if channels == 1:
        return encode_in_chunks(codec, wav)  # [B, K, T]; a long prompt 30 s at a time
    left, right = encode_in_chunks(codec, wav[:, :1]), encode_in_chunks(codec, wav[:, 1:])  # [B, K, T] each
    return torch.stack([left, right], dim=2).flatten(1, 2)  # [B, 2K, T], interleaved

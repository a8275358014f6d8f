"""Audio prompts: any waveform -> the codes a MusicGen model continues from."""

import torch

from encodec import EncodecModel


def resample(wav: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """Band-limited resampling of [..., N] (julius' windowed-sinc `resample_frac`)."""
    if from_rate == to_rate:
        return wav
    import julius

    return julius.resample_frac(wav, from_rate, to_rate)


def match_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """[B, C, N] -> [B, channels, N]: mono is the mean of the channels, mono to stereo repeats it."""
    if wav.shape[1] == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=1, keepdim=True)
    if wav.shape[1] == 1:
        return wav.expand(-1, channels, -1)
    raise ValueError(f"cannot turn {wav.shape[1]}-channel audio into {channels} channels")


@torch.no_grad()
def prepare_prompt(codec: EncodecModel, channels: int, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Encode a prompt for a model of `channels` audio channels. Returns codes [B, K, T_prompt].

    Args:
        codec: the model's (mono) codec.
        channels: 1, or 2 for stereo models, whose codes interleave left and right: [l0, r0, l1, r1, ...].
        wav: [B, C, N] or [C, N] audio in [-1, 1].
        sample_rate: the prompt's rate; it is resampled to the codec's.
    """
    if wav.dim() == 2:
        wav = wav[None]
    if wav.dim() != 3 or wav.shape[-1] == 0:
        raise ValueError(f"the audio prompt must be [B, C, N] or [C, N] with N > 0, got {list(wav.shape)}")
    device = next(codec.parameters()).device
    wav = resample(wav.float().to(device), sample_rate, codec.sample_rate)
    wav = match_channels(wav, channels)  # [B, channels, N']
    if channels == 1:
        return codec.encode(wav)  # [B, K, T]
    left, right = codec.encode(wav[:, :1]), codec.encode(wav[:, 1:])  # [B, K, T] each
    return torch.stack([left, right], dim=2).flatten(1, 2)  # [B, 2K, T], interleaved

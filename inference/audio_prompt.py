"""Audio prompts: any waveform -> the codes a MusicGen model continues from."""

import torch

from audio.clip import check_finite, convert_channels, resample
from encodec import EncodecModel
from inference.checks import check_descriptions, check_sample_rate
from inference.chunked import encode_in_chunks


def prompt_codes(codec: EncodecModel, channels: int, wav: torch.Tensor, sample_rate: int | None,
                 descriptions: list[str | None] | str | None,
                 num_frames: int) -> tuple[torch.Tensor, list[str | None]]:
    """The codes [B, K, T_p] of an audio prompt for a piece of `num_frames` frames, and one description per prompt
    (None: no text); everything is checked before the prompt is encoded (`prepare_prompt`).

    Args:
        codec, channels: as `prepare_prompt`.
        wav: [B, C, N] or [C, N] audio at `sample_rate`.
        descriptions: None (no text) or one text per prompt.
        num_frames: the frames of the piece, prompt included: the prompt must be shorter.
    """
    check_sample_rate(sample_rate, "prompt_sample_rate")
    if not isinstance(wav, torch.Tensor) or wav.dim() not in (2, 3):
        got = list(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
        raise ValueError(f"prompt_wav must be a [B, C, N] or [C, N] tensor, got {got}")
    batch = wav.shape[0] if wav.dim() == 3 else 1
    descriptions = check_descriptions([None] * batch if descriptions is None else descriptions, batch)
    duration = num_frames / codec.frame_rate
    if wav.shape[-1] / sample_rate >= duration:
        raise ValueError(f"the prompt ({wav.shape[-1] / sample_rate:.2f} s) must be shorter than the requested "
                         f"duration ({duration:g} s), which includes it")
    prompt = prepare_prompt(codec, channels, wav, sample_rate)  # [B, K, T_p]
    if prompt.shape[-1] >= num_frames:
        raise ValueError(f"the prompt ({prompt.shape[-1] / codec.frame_rate:.2f} s) must be shorter than the "
                         f"requested duration ({duration:g} s), which includes it")
    return prompt, descriptions


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

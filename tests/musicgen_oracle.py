"""A tiny random transformers MusicGen, saved like a published checkpoint (with a word-level tokenizer).

It is the oracle of the pipeline tests: our `MusicGen.from_pretrained(folder)` must generate the same greedy
codes and the same audio as `MusicgenForConditionalGeneration.generate` on these weights.
"""

import math
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, processors

PROMPTS = "an uplifting jazz song that makes your head shake; lo-fi funk; 80s pop track with bassy drums and synth"
WORDS = PROMPTS.replace(";", "").split()  # noqa: SIM905
CARD = 64


def word_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer that ends every text with </s>, as T5's does."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{word: i + 3 for i, word in enumerate(dict.fromkeys(WORDS))}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                                                unk_token="<unk>")


def tiny_musicgen(stereo: bool = False, seed: int = 0) -> transformers.MusicgenForConditionalGeneration:
    """Random weights of every part; LM heads scaled so greedy choices are well separated; codebooks filled."""
    text = transformers.T5Config(vocab_size=len(WORDS) + 3, d_model=24, d_kv=6, d_ff=37, num_layers=2, num_heads=4)
    audio = transformers.EncodecConfig(
        sampling_rate=800, audio_channels=1, num_filters=4, upsampling_ratios=[4, 4], hidden_size=8,
        codebook_size=CARD, num_lstm_layers=1, target_bandwidths=[1.2], use_causal_conv=False,
        use_conv_shortcut=False)  # 50 frames per second, 4 codebooks of 64 codes
    decoder = transformers.MusicgenDecoderConfig(
        vocab_size=CARD, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
        num_codebooks=8 if stereo else 4, audio_channels=2 if stereo else 1, max_position_embeddings=256,
        pad_token_id=CARD, bos_token_id=CARD)
    torch.manual_seed(seed)
    config = transformers.MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    model = transformers.MusicgenForConditionalGeneration(config).eval()
    return _ready_for_parity(model)


def _ready_for_parity(model: transformers.PreTrainedModel) -> transformers.PreTrainedModel:
    """Scale the LM heads (well-separated greedy choices), fill the codebooks (transformers leaves them at
    zero, which would decode every code to the same audio), and set the special token for generation."""
    with torch.no_grad():
        for head in model.decoder.lm_heads:
            head.weight.mul_(10)
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    model.generation_config.decoder_start_token_id = CARD
    model.generation_config.pad_token_id = CARD
    return model


def save_tiny_musicgen(folder: Path, stereo: bool = False) -> tuple[transformers.PreTrainedModel, Path]:
    model = tiny_musicgen(stereo)
    model.save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return model, folder


def hf_generate_codes(model, descriptions: list[str], num_frames: int, guidance_scale: float | None,
                      input_values: torch.Tensor | None = None):
    """transformers' greedy generation: (codes [B, K, T], audio [B, C, N]), T = num_frames in all.

    With `input_values` (an audio prompt [B, C, N]) it continues the prompt, whose frames count in T.
    transformers' `max_new_tokens` counts pattern steps after the prompt's frames: T - T_prompt + max_delay.
    """
    inputs = word_tokenizer()(descriptions, return_tensors="pt", padding=True)
    if input_values is not None:
        inputs["input_values"] = input_values
    hop = math.prod(model.audio_encoder.config.upsampling_ratios)
    prompt_frames = 0 if input_values is None else input_values.shape[-1] // hop
    captured = []
    decode = model.audio_encoder.decode

    def capture(codes, *args, **kwargs):
        captured.append(codes[0])
        return decode(codes, *args, **kwargs)

    model.audio_encoder.decode = capture
    max_delay = model.decoder.num_codebooks // model.decoder.config.audio_channels - 1
    try:
        with torch.no_grad():
            audio = model.generate(**inputs, do_sample=False, guidance_scale=guidance_scale,
                                   max_new_tokens=num_frames - prompt_frames + max_delay)
    finally:
        model.audio_encoder.decode = decode
    # stereo models decode left then right codebooks: interleave them back
    codes = captured[0] if len(captured) == 1 else torch.stack(captured, dim=2).flatten(1, 2)
    return codes, audio


def tiny_melody_musicgen(chroma_length: int = 20) -> transformers.MusicgenMelodyForConditionalGeneration:
    """A tiny random melody model (no cross-attention; [chroma, text] prepended), like `tiny_musicgen`."""
    text = transformers.T5Config(vocab_size=len(WORDS) + 3, d_model=24, d_kv=6, d_ff=37, num_layers=2, num_heads=4)
    audio = transformers.EncodecConfig(
        sampling_rate=800, num_filters=4, upsampling_ratios=[4, 4], hidden_size=8, codebook_size=CARD,
        num_lstm_layers=1, target_bandwidths=[1.2], use_causal_conv=False, use_conv_shortcut=False)
    decoder = transformers.MusicgenMelodyDecoderConfig(
        vocab_size=CARD, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64, num_codebooks=4,
        max_position_embeddings=256, pad_token_id=CARD, bos_token_id=CARD)
    config = transformers.MusicgenMelodyConfig(text_encoder=text, audio_encoder=audio, decoder=decoder,
                                               num_chroma=12, chroma_length=chroma_length)
    torch.manual_seed(0)
    model = transformers.MusicgenMelodyForConditionalGeneration(config).eval()
    return _ready_for_parity(model)


def save_tiny_melody_musicgen(folder: Path, chroma_length: int = 20) -> tuple[transformers.PreTrainedModel, Path]:
    model = tiny_melody_musicgen(chroma_length)
    model.save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return model, folder

"""One decoding step at the full musicgen-small LM shape, random weights, through the real key names.

The decoder is musicgen-small's (dim 1024, 24 layers, 16 heads, FFN 4096, 4 x 2048 codebooks) and the text
width is T5-base's 768, so every LM tensor name and shape of the published checkpoint is exercised; the T5
and the codec are kept tiny (their full shapes are covered by the codec tests and transformers itself).
"""

import torch
import transformers

from inference import MusicGen
from tests.musicgen_oracle import word_tokenizer


def test_musicgen_small_shape_one_step_logits(tmp_path):
    text = transformers.T5Config(vocab_size=64, d_model=768, d_kv=64, d_ff=256, num_layers=1, num_heads=12)
    audio = transformers.EncodecConfig(
        sampling_rate=32_000, num_filters=4, upsampling_ratios=[8, 5, 4, 4], hidden_size=8, codebook_size=2048,
        target_bandwidths=[2.2], use_causal_conv=False, use_conv_shortcut=False, num_lstm_layers=1)
    decoder = transformers.MusicgenDecoderConfig(
        vocab_size=2048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, ffn_dim=4096,
        num_codebooks=4, max_position_embeddings=2048, pad_token_id=2048, bos_token_id=2048)
    torch.manual_seed(0)
    config = transformers.MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    oracle = transformers.MusicgenForConditionalGeneration(config).eval()
    oracle.save_pretrained(tmp_path)
    tokenizer = word_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    ours = MusicGen.from_pretrained(tmp_path, device="cpu", quantize=None)
    assert ours.lm.config.dim == 1024 and ours.lm.config.num_layers == 24 and ours.lm.config.card == 2048

    prompts = ["80s pop track with bassy drums", "an uplifting jazz song that makes"]  # same token count
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    start = torch.full((2 * 4, 1), 2048)  # the all-special first step, [B * K, 1]
    with torch.no_grad():
        want = oracle(**inputs, decoder_input_ids=start).logits.reshape(2, 4, 1, 2048)  # [B, K, S, V]
        cond = ours._condition(prompts, with_null=False)
        got = ours.lm(start.reshape(2, 4, 1), cond)
    assert (got - want).abs().max().item() < 1e-5
    assert torch.equal(got.argmax(-1), want.argmax(-1))

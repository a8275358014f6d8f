"""The word-table conditioner of self-trained models: what it reads of a description, and a fixed layout."""

import torch

from encodec import EncodecModel, get_preset
from inference import MusicGen
from lm.conditioning import LookupTableConditioner
from lm.config import LMConfig
from lm.model import MusicGenLM


def test_words_are_lower_case_without_punctuation():
    text = LookupTableConditioner(num_bins=50, dim=8, max_words=6)
    assert text.words("Lo-fi funk. Slow tempo, 72 BPM, in D major (bright major key).") == [
        "lo-fi", "funk", "slow", "tempo", "72", "bpm"]
    assert text.word_ids("Lo-fi funk.") == text.word_ids("lo-fi  FUNK")
    assert text.words("80s pop, don't stop!") == ["80s", "pop", "don't", "stop"]
    assert text.words("Música ÉLECTRONIQUE: café-concert") == ["música", "électronique", "café-concert"]


def test_every_description_is_padded_to_max_words():
    text = LookupTableConditioner(num_bins=50, dim=8, max_words=6)
    states, mask = text(["jazz", None, "a b c d e f g h"])
    assert states.shape == (3, 6, 8) and mask.tolist() == [[1, 0, 0, 0, 0, 0], [0] * 6, [1] * 6]
    alone, alone_mask = text(["jazz"])
    assert torch.equal(alone[0], states[0]) and torch.equal(alone_mask[0], mask[0])


def test_a_prompt_alone_generates_what_it_generates_beside_a_longer_one():
    """Without a key mask the padding takes part of the attention: a fixed length keeps it the same in any batch."""
    torch.manual_seed(0)
    codec = EncodecModel(get_preset("encodec-32khz", n_filters=4, dimension=16, bins=64, n_q=4)).eval()
    lm = MusicGenLM(LMConfig(dim=32, num_layers=2, num_heads=4, ffn_dim=64, card=64, cond_dim=None)).eval()
    model = MusicGen(lm, codec, LookupTableConditioner(num_bins=50, dim=32).eval(), max_duration=8.0)
    alone = model.generate_tokens(["lo-fi funk"], duration=0.3, use_sampling=False)
    batch = model.generate_tokens(["lo-fi funk", "a calm ambient piece with soft pads and no drums at all"],
                                  duration=0.3, use_sampling=False)
    assert torch.equal(alone[0], batch[0])

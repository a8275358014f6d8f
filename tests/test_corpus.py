"""The captioned corpus (corpus/render.py): files, determinism, audio sanity, and captions true of the music."""

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from symusic import Score, Synthesizer

from corpus.arrange import Arrangement, diatonic_chord
from corpus.effects import lowpass, room
from corpus.render import MAX_PITCH, build_corpus, default_soundfont, make_chorale_clip, make_clip, synth_rate
from corpus.styles import STYLES, STYLES_BY_NAME, arrange, describe, instrument_names, tempo_word

SAMPLE_RATE = 16000
SECONDS = 2.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three 2 s clips at 16 kHz, one each of a drums style, a no-drums style and the lo-fi style."""
    out = tmp_path_factory.mktemp("corpus")
    styles = (STYLES_BY_NAME["techno"], STYLES_BY_NAME["piano_ballad"], STYLES_BY_NAME["lofi_funk"])
    records = build_corpus(out, count=3, seconds=SECONDS, seed=0, sample_rate=SAMPLE_RATE, styles=styles,
                           progress=False)
    return out, records


@pytest.fixture(scope="module")
def synth():
    return Synthesizer(sf_path=str(default_soundfont()), sample_rate=synth_rate(SAMPLE_RATE))


def test_files_manifest_and_sidecars(corpus):
    out, records = corpus
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert lines == records and len(lines) == 3
    assert [r["path"] for r in lines] == ["techno_00000.wav", "piano_ballad_00001.wav", "lofi_funk_00002.wav"]
    for record in lines:
        stem = out / record["path"].removesuffix(".wav")
        sidecar = json.loads(stem.with_suffix(".json").read_text())
        assert sidecar == {k: v for k, v in record.items() if k != "path"}
        assert stem.with_suffix(".txt").read_text().strip() == record["caption"]
        assert stem.with_suffix(".mid").is_file()
        assert set(sidecar) >= {"caption", "style", "tempo", "key", "instruments", "drums", "seconds"}


def test_audio_is_mono_full_length_not_silent_and_within_full_scale(corpus):
    out, records = corpus
    for record in records:
        audio, sample_rate = sf.read(out / record["path"], always_2d=True)
        assert sample_rate == SAMPLE_RATE and audio.shape == (SECONDS * SAMPLE_RATE, 1)
        assert np.abs(audio).max() <= 1.0
        assert np.sqrt(np.mean(audio**2)) > 0.01


def test_same_seed_same_bytes_independent_of_count(corpus, tmp_path):
    out, records = corpus
    styles = tuple(STYLES_BY_NAME[r["style"]] for r in records)
    again = build_corpus(tmp_path / "again", count=2, seconds=SECONDS, seed=0, sample_rate=SAMPLE_RATE,
                         styles=styles, progress=False)
    assert again == records[:2]
    for record in again:
        assert (tmp_path / "again" / record["path"]).read_bytes() == (out / record["path"]).read_bytes()
    other = build_corpus(tmp_path / "other", count=2, seconds=SECONDS, seed=1, sample_rate=SAMPLE_RATE,
                         styles=styles, progress=False)
    assert [r["caption"] for r in other] != [r["caption"] for r in records[:2]]


def test_drums_in_caption_iff_drum_track_in_midi(corpus):
    out, records = corpus
    for record in records:
        score = Score(str(out / record["path"].replace(".wav", ".mid")))
        has_drum_track = any(track.is_drum and len(track.notes) > 0 for track in score.tracks)
        assert has_drum_track == record["drums"]
        assert ("with drums" in record["caption"]) == has_drum_track
        assert ("no drums" in record["caption"]) == (not has_drum_track)
    assert records[0]["drums"] and not records[1]["drums"]  # techno has drums, the solo piano ballad none


def test_caption_tempo_matches_midi_and_style_range(corpus):
    out, records = corpus
    for record in records:
        bpm = int(re.search(r"(\d+) BPM", record["caption"]).group(1))
        score = Score(str(out / record["path"].replace(".wav", ".mid")))
        assert bpm == record["tempo"] == round(score.tempos[0].qpm)
        low, high = STYLES_BY_NAME[record["style"]].tempo
        assert low <= bpm <= high
        assert f"{tempo_word(bpm).capitalize()} tempo" in record["caption"]


@pytest.mark.parametrize("style", STYLES, ids=lambda s: s.name)
def test_captions_are_true_of_the_arrangement(style):
    for index in range(12):
        arrangement = arrange(style, 10.0, np.random.default_rng([0, index]))
        caption = describe(style.caption, arrangement)
        assert caption.startswith(style.caption + ".")
        assert f"{arrangement.tempo} BPM" in caption and f"in {arrangement.key} " in caption
        assert ("with drums" in caption) == arrangement.has_drums
        named = caption.split("Instruments: ")[1].rstrip(".").split(", ")
        assert named == instrument_names(arrangement) and len(named) > 0
        if not any(i.is_drum for i in style.instruments):
            assert not arrangement.has_drums
        pitches = [n.pitch for p in arrangement.parts if not p.is_drum for n in p.notes]
        assert max(pitches) <= MAX_PITCH  # above it the synthesizer can hang (see corpus/render.py)
        assert all(len(p.notes) > 0 for p in arrangement.parts)


def onset_strength(audio: np.ndarray) -> float:
    """Spectral flux: the rises of the STFT magnitude between frames, relative to the total magnitude."""
    x = torch.from_numpy(audio).float()
    mag = torch.stft(x, n_fft=512, hop_length=160, window=torch.hann_window(512), return_complex=True).abs()  # [F, T]
    return (torch.relu(mag[:, 1:] - mag[:, :-1]).sum() / mag.sum()).item()


def low_share(audio: np.ndarray, sample_rate: int, below_hz: float = 150.0) -> float:
    """Fraction of the energy below `below_hz` (kick drum and bass)."""
    power = np.abs(np.fft.rfft(audio)) ** 2
    return float(power[np.fft.rfftfreq(len(audio), 1 / sample_rate) < below_hz].sum() / power.sum())


def test_techno_has_more_onsets_and_low_end_than_slow_piano(synth):
    techno = [make_clip(STYLES_BY_NAME["techno"], i, 0, 3.0, SAMPLE_RATE, synth).audio for i in range(2)]
    piano = [make_clip(STYLES_BY_NAME["piano_ballad"], i, 0, 3.0, SAMPLE_RATE, synth).audio for i in range(2)]
    assert min(map(onset_strength, techno)) > 1.5 * max(map(onset_strength, piano))
    assert min(low_share(a, SAMPLE_RATE) for a in techno) > max(low_share(a, SAMPLE_RATE) for a in piano) + 0.2


def test_known_values():
    assert diatonic_chord(9, "minor", 0, sevenths=False).tones == (9, 0, 4)  # A minor: A C E
    assert diatonic_chord(0, "major", 4, sevenths=True).tones == (7, 11, 2, 5)  # G7 in C: G B D F
    swung = Arrangement(tempo=120, tonic=0, mode="major", bars=1, parts=(), swing=0.62)
    assert [swung.swung(b) for b in (0.0, 0.5, 1.0, 1.5)] == pytest.approx([0.0, 0.62, 1.0, 1.62])
    assert Arrangement(tempo=90, tonic=6, mode="minor", bars=1, parts=()).key == "F# minor"
    assert [tempo_word(b) for b in (79, 80, 119, 120)] == ["slow", "medium", "medium", "fast"]


def test_lowpass_keeps_bass_and_cuts_treble():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    for hz, kept in ((200, True), (7000, False)):
        tone = np.sin(2 * np.pi * hz * t)
        gain = np.abs(lowpass(tone, SAMPLE_RATE, cutoff_hz=3000)).max()
        assert (gain > 0.95) if kept else (gain < 0.2)


def test_bach_chorale_clip(synth):
    pytest.importorskip("music21")
    from corpus.chorales import TEMPO, chorale_paths, read_chorale

    chorale = read_chorale(next(p for p in chorale_paths() if p.stem == "bwv66.6"))
    assert (chorale.tonic, chorale.mode) == (6, "minor")  # BWV 66.6 is in F# minor
    clip = make_chorale_clip(chorale, index=7, seed=0, seconds=SECONDS, sample_rate=SAMPLE_RATE, synth=synth)
    assert clip.name == "bach_chorale_00007" and clip.caption.startswith("Bach chorale")
    assert "F# minor" in clip.caption and "no drums" in clip.caption and not clip.arrangement.has_drums
    assert len(clip.arrangement.parts) == 4 and TEMPO[0] <= clip.arrangement.tempo <= TEMPO[1]
    assert clip.audio.shape == (SECONDS * SAMPLE_RATE,) and np.sqrt(np.mean(clip.audio**2)) > 0.01


def test_room_adds_a_decaying_tail_of_the_drawn_length():
    rate = SAMPLE_RATE
    click = np.zeros(3 * rate, dtype=np.float32)
    click[rate // 10] = 1.0
    wet, parameters = room(click, rate, np.random.default_rng(3))
    assert wet.shape == click.shape and np.isfinite(wet).all()
    assert set(parameters) == {"rt60", "wet", "pre_delay"} and 0.2 <= parameters["rt60"] <= 1.6
    start = rate // 10 + round(parameters["pre_delay"] * rate)
    tail = wet[start + 1:]
    early = np.sqrt(np.mean(tail[: rate // 20] ** 2))  # the first 50 ms of the tail
    at_rt60 = round(parameters["rt60"] * rate)
    late = np.sqrt(np.mean(tail[at_rt60 - rate // 20: at_rt60] ** 2))  # 50 ms before RT60
    assert 0.0 < late < early * 10 ** (-40 / 20)  # decayed by well over 40 dB (60 dB by the end)
    assert np.abs(wet[: rate // 10]).max() < 1e-6  # nothing before the sound (FFT rounding aside)
    again, same = room(click, rate, np.random.default_rng(3))
    assert np.array_equal(again, wet) and same == parameters


def test_reverb_clips_record_their_room_and_keep_their_caption(synth):
    style = STYLES_BY_NAME["techno"]
    dry = make_clip(style, 2, 0, SECONDS, SAMPLE_RATE, synth)
    wet = make_clip(style, 2, 0, SECONDS, SAMPLE_RATE, synth, reverb=True)
    assert wet.caption == dry.caption and wet.arrangement == dry.arrangement
    assert "room" in wet.metadata() and "room" not in dry.metadata()
    assert not np.allclose(wet.audio, dry.audio) and np.abs(wet.audio).max() == pytest.approx(0.9, abs=1e-3)

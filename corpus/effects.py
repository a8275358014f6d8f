"""Audio processing for rendered clips: peak normalisation, and the lo-fi sound (muffled, saturated, hissy).

All functions take and return mono float audio `[N]`.
"""

import numpy as np


def normalise_peak(audio: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """Scale so that the largest absolute sample is `peak` (the synthesizer's output can exceed 1.0)."""
    top = float(np.abs(audio).max())
    if top == 0.0:
        raise ValueError("cannot normalise silent audio")
    return (audio * (peak / top)).astype(np.float32)


def lowpass(audio: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """Zero-phase low-pass with the magnitude of a 2nd-order Butterworth, 1 / sqrt(1 + (f / fc)^4), via the FFT."""
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(len(audio), d=1.0 / sample_rate)
    return np.fft.irfft(spectrum / np.sqrt(1.0 + (freqs / cutoff_hz) ** 4), n=len(audio))


def lofi(audio: np.ndarray, sample_rate: int, rng: np.random.Generator, cutoff_hz: float = 3000.0,
         drive: float = 2.0, hiss_db: float = -40.0) -> np.ndarray:
    """The lo-fi sound: dull highs (low-pass at `cutoff_hz`), soft tape-like saturation (tanh), and a bed of hiss
    at `hiss_db` below full scale."""
    muffled = lowpass(audio, sample_rate, cutoff_hz)
    muffled = muffled / max(float(np.abs(muffled).max()), 1e-9)
    saturated = np.tanh(drive * muffled) / np.tanh(drive)
    hiss = lowpass(rng.standard_normal(len(audio)), sample_rate, 2 * cutoff_hz) * 10 ** (hiss_db / 20)
    return (saturated + hiss).astype(np.float32)


def room(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The clip in a drawn room: convolved with a synthetic impulse response (a direct path, then a pre-delay and
    a tail of noise that decays by 60 dB in RT60 seconds and darkens as it decays), mixed at a drawn wet level.

    Returns the audio (same length, the tail past the end is cut) and the room's parameters, for the clip's
    metadata. Rooms span a small studio (RT60 0.2 s, mostly dry) to a hall (1.6 s, wetter).
    """
    rt60 = float(rng.uniform(0.2, 1.6))
    wet = float(rng.uniform(0.08, 0.3))
    pre_delay = float(rng.uniform(0.005, 0.03))
    n = round((pre_delay + rt60) * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * 10 ** (-3 * np.maximum(t - pre_delay, 0) / rt60)  # -60 dB at pre_delay + rt60
    tail[: round(pre_delay * sample_rate)] = 0.0
    # Air and walls absorb highs faster: blend the tail towards a low-passed copy of itself as it decays.
    dark = lowpass(tail, sample_rate, 2500.0)
    fade = np.minimum(t / rt60, 1.0)
    tail = (1 - fade) * tail + fade * dark
    tail /= np.sqrt(np.sum(tail**2))  # unit energy: `wet` sets the reverb's level against the direct sound
    size = 1 << int(np.ceil(np.log2(len(audio) + n)))
    reverb = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(tail, size), size)[: len(audio)]
    out = (1 - wet) * audio + wet * reverb * np.sqrt(np.mean(audio**2) / max(np.mean(reverb**2), 1e-20))
    return out.astype(np.float32), {"rt60": round(rt60, 3), "wet": round(wet, 3), "pre_delay": round(pre_delay, 4)}

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

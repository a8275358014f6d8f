"""Audio in and out: clips read, resampled, measured and written (`clip`), the true-peak limiter (`limiter`),
spectrogram pictures (`spectrogram`), the spectral-gate denoiser (`denoise`), and a WAV written while it is made
(`wav_stream`). Nothing here knows the model: these are the pipeline's edges, shared by every front end."""

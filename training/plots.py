"""Figures of a training run: the loss curves (a PNG in the output folder) and mel spectrograms (TensorBoard).

matplotlib is used without a display (the Agg backend).
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import torch  # noqa: E402

TRAIN_CURVES = ("l1", "msspec", "mel", "feat", "commitment")  # reconstruction-type losses, log scale
GAN_CURVES = ("adv", "d_loss")  # can be negative: linear scale


def plot_training_curves(history: dict[str, list[dict]], path: str | Path, title: str = "codec training") -> Path:
    """Write the training losses and the validation metrics against the step as one PNG.

    Args:
        history: {"train": [{"step": s, loss name: value, ...}, ...], "valid": [{"step": s, "si_snr": ...}]}.
        path: the image file to write.
    Returns:
        the path written.
    """
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    train, valid = history.get("train", []), history.get("valid", [])
    steps = [e["step"] for e in train]
    for name in TRAIN_CURVES:
        if train and name in train[0]:
            axes[0].plot(steps, [e[name] for e in train], label=name)
    axes[0].set(yscale="log", xlabel="step", title="codec losses (train)")
    for name in GAN_CURVES:
        if train and name in train[0]:
            axes[1].plot(steps, [e[name] for e in train], label=name)
    axes[1].set(xlabel="step", title="adversarial losses (train)")
    valid_steps = [e["step"] for e in valid]
    if valid:
        axes[2].plot(valid_steps, [e["si_snr"] for e in valid], "o-", label="SI-SNR (dB)")
        mel_axis = axes[2].twinx()
        mel_axis.plot(valid_steps, [e["mel"] for e in valid], "s--", color="tab:red", label="mel L1")
        mel_axis.set_ylabel("log-mel L1")
        mel_axis.legend(loc="lower right", fontsize="small", framealpha=0.7)
    axes[2].set(xlabel="step", ylabel="dB", title="validation")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right" if ax is not axes[2] else "upper left", fontsize="small", framealpha=0.7)
    return _save(fig, title, path)


def spectrogram_figure(log_mels: torch.Tensor, titles: list[str]) -> plt.Figure:
    """Side-by-side log-mel spectrograms on one colour scale.

    Args:
        log_mels: [n, C * M, T] log10 mel spectrograms (channels stacked on the band axis).
        titles: n titles.
    """
    fig, axes = plt.subplots(1, len(titles), figsize=(5 * len(titles), 3), squeeze=False)
    low, high = float(log_mels.min()), float(log_mels.max())
    for ax, mel, title in zip(axes[0], log_mels, titles, strict=True):
        ax.imshow(mel.numpy(), origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma")
        ax.set(title=title, xlabel="frame", ylabel="mel band")
    fig.tight_layout()
    return fig


def plot_lm_curves(history: dict[str, list[dict]], path: str | Path, title: str = "LM training") -> Path:
    """The training and validation losses, and the validation accuracy of each codebook, against the step."""
    fig, (losses, accuracy) = plt.subplots(1, 2, figsize=(12, 4.5))
    train, valid = history.get("train", []), history.get("valid", [])
    if train:
        losses.plot([e["step"] for e in train], [e["loss"] for e in train], label="train", alpha=0.8)
    if valid:
        steps = [e["step"] for e in valid]
        losses.plot(steps, [e["loss"] for e in valid], "o-", label="valid")
        for name in sorted(k for k in valid[0] if k.startswith("acc_q")):
            accuracy.plot(steps, [e[name] for e in valid], "o-", label=f"codebook {name[len('acc_q'):]}")
    losses.set(xlabel="step", ylabel="cross-entropy (nats)", title="loss (mean over codebooks)")
    accuracy.set(xlabel="step", ylabel="top-1 accuracy", title="validation accuracy per codebook")
    for ax in (losses, accuracy):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", framealpha=0.7)
    return _save(fig, title, path)


def _save(fig: plt.Figure, title: str, path: str | Path) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

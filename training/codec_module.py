"""EnCodec's GAN training as a LightningModule (EnCodec paper section 3.4; audiocraft's compression solver).

One training step, on a batch of real audio x [B, C, N]:
1. y = codec(x), the reconstruction through the quantizer (straight-through gradients).
2. Discriminator update: hinge loss of the MS-STFT discriminator on x (real) and y.detach() (fake).
3. Codec update: l1(y, x), multi-scale mel(y, x), adversarial hinge and feature matching (through the
   just-updated discriminator) are combined by the Balancer into one gradient G = dL/dy; the commitment
   loss of the quantizer is added outside the balancer, as in the paper.

How the balanced gradient reaches the codec (`balanced_surrogate`): the losses are computed on a detached
copy y_ of y, so `Balancer.backward(losses, y_)` leaves G in y_.grad and touches no parameter. The codec
then gets one ordinary backward of sum(y * G) + w_commit * commitment, whose gradient w.r.t. y is exactly G.
One `manual_backward` per optimizer keeps Lightning's precision scaling and DDP gradient sync in the loop
(the Balancer's own `y.backward(G)` would bypass both).

Lightning counts every `optimizer.step()` in `trainer.global_step`, so one training step here is two of its
steps; `codec_step` is the step count this program reports (and `--max-steps` counts).

With `--adv-weight 0 --feat-weight 0` the discriminator is left out altogether (no forward, no update; its
optimizer still steps, gradient-free, so a training step stays two Lightning steps): plain l1 + mel
reconstruction training, several times faster per step, useful as a warm start before the GAN is switched on
by resuming with non-zero weights.

Deviations from audiocraft's solver: no EMA copy of the codec weights; a loss of weight 0 is computed with the
others and logged but left out of the balancer (audiocraft computes it under no_grad); validation SI-SNR is
taken over whole segments; the balancer's gradient-norm averages are per process under DDP.

Shape legend: B batch, C audio channels, N samples.
"""

from collections.abc import Callable
from dataclasses import asdict

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from encodec import EncodecModel, EncodecOutput
from encodec.balancer import Balancer
from encodec.discriminator import MultiScaleSTFTDiscriminator
from encodec.losses import (
    MelL1Loss,
    MultiScaleMelLoss,
    discriminator_adversarial_loss,
    generator_adversarial_losses,
    si_snr_loss,
    waveform_l1_loss,
)
from training.codec_settings import CodecTrainSettings, starting_codec
from training.plots import spectrogram_figure

OPTIMIZER_STEPS_PER_BATCH = 2  # discriminator, then codec
AUDIO_EXAMPLES = 2  # validation examples written to TensorBoard
VALID_METRICS = ("si_snr", "mel", "l1")


def balanced_surrogate(balancer: Balancer, y: torch.Tensor,
                       compute_losses: Callable[[torch.Tensor], dict[str, torch.Tensor]]
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """A scalar whose gradient w.r.t. y is the balancer's combined gradient G of the losses of y.

    The losses are computed on a detached copy y_ of y, `balancer.backward` stores G in y_.grad, and
    sum(y * G) carries G back into y's graph on the next backward (d/dy sum(y * G) = G).

    Args:
        balancer: combines the losses whose weight is > 0; the others are only returned.
        y: [B, ...] the model output, part of the graph.
        compute_losses: y_ -> {name: scalar loss}.
    Returns:
        (surrogate scalar, every loss detached, the balancer's effective loss).
    """
    y_ = y.detach().requires_grad_()
    losses = compute_losses(y_)
    balanced = {k: v for k, v in losses.items() if balancer.weights.get(k, 0) > 0}
    effective = balancer.backward(balanced, y_)  # y_.grad = G [B, ...]
    return (y * y_.grad).sum(), {k: v.detach() for k, v in losses.items()}, effective


class CodecTrainingModule(L.LightningModule):
    """The codec, its discriminator, their losses and optimizers (manual optimization).

    Args:
        settings: the run's settings (model shape, loss weights, optimizer).
    """

    def __init__(self, settings: CodecTrainSettings):
        super().__init__()
        self.automatic_optimization = False
        self.settings = settings
        config = settings.codec_config()
        self.codec = EncodecModel(config)
        if settings.init_from:
            self.codec.load_state_dict(starting_codec(settings.init_from).state_dict())
        if settings.train == "decoder":
            # Frozen parts are also kept in eval mode (see `on_train_batch_start`): no codebook EMA updates, no
            # quantizer dropout, so the decoder always learns from the full set of codes an LM predicts.
            for part in self.frozen_parts():
                part.requires_grad_(False)
        n_ffts = settings.disc_n_ffts
        # LeakyReLU slope 0.3: audiocraft's solver config (the paper and the class default say 0.2).
        self.discriminator = MultiScaleSTFTDiscriminator(
            filters=settings.disc_filters, in_channels=config.channels, n_ffts=n_ffts,
            hop_lengths=[n // 4 for n in n_ffts], win_lengths=n_ffts, negative_slope=0.3,
        )
        self.msspec = MultiScaleMelLoss(config.sample_rate)
        self.mel_distance = MelL1Loss(config.sample_rate)  # validation metric, and logged in training
        self.balancer = Balancer({k: w for k, w in settings.loss_weights.items() if w > 0},
                                 balance_grads=settings.balancer)
        self.history: dict[str, list[dict]] = {"train": [], "valid": []}  # for the loss-curve image
        self._valid_sums = torch.zeros(len(VALID_METRICS) + 1)
        self._examples: tuple[torch.Tensor, torch.Tensor] | None = None

    def frozen_parts(self) -> list[torch.nn.Module]:
        """The codec's modules that `--train` keeps fixed."""
        return [self.codec.encoder, self.codec.quantizer] if self.settings.train == "decoder" else []

    def on_train_batch_start(self, batch: torch.Tensor, batch_idx: int) -> None:
        # Here rather than in `train()`: Lightning also sets each submodule's mode back one by one after a
        # validation, which would wake the frozen codebooks' EMA updates.
        for part in self.frozen_parts():
            part.eval()

    @property
    def codec_step(self) -> int:
        """Completed training steps (each one discriminator and one codec update)."""
        return self.trainer.global_step // OPTIMIZER_STEPS_PER_BATCH

    @property
    def uses_discriminator(self) -> bool:
        """False when both adversarial losses have weight 0: reconstruction losses only."""
        return self.settings.adv_weight > 0 or self.settings.feat_weight > 0

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        lr, betas = self.settings.lr, tuple(self.settings.betas)
        trained = [p for p in self.codec.parameters() if p.requires_grad]
        return [torch.optim.Adam(trained, lr=lr, betas=betas),
                torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)]

    # -----------------------------------------------------------------------------------------------------
    # Training

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        x = batch  # [B, C, N]
        opt_codec, opt_disc = self.optimizers()
        # Deviation: the codec runs in float32 even under --precision *-mixed, since the codebooks' EMA update
        # (encodec/quantizer.py) mixes float32 buffers with the latents; mixed precision reaches the discriminator.
        with torch.autocast(self.device.type, enabled=False):
            out = self.codec(x)  # out.audio [B, C, N]
        if self.uses_discriminator:
            metrics = {"d_loss": self.discriminator_update(x, out.audio.detach(), opt_disc)}
        else:
            opt_disc.step()  # no gradients: changes nothing, but counts as the step's first Lightning step
            metrics = {}
        metrics |= self.codec_update(x, out, opt_codec)
        self.log_dict({f"train/{k}": v for k, v in metrics.items()}, batch_size=x.shape[0])
        # For checkpoint file names only (ModelCheckpoint formats them from the logged metrics).
        self.log("codec_step", float(self.codec_step), logger=False, batch_size=x.shape[0])
        if self.codec_step % self.settings.log_every == 0:
            self.history["train"].append({"step": self.codec_step, **{k: float(v) for k, v in metrics.items()}})

    def discriminator_update(self, x: torch.Tensor, fake: torch.Tensor, opt: torch.optim.Optimizer) -> torch.Tensor:
        """One discriminator update on real x and (detached) fake audio [B, C, N]. Returns its hinge loss."""
        logits_real, _ = self.discriminator(x)
        logits_fake, _ = self.discriminator(fake)
        loss = discriminator_adversarial_loss(logits_real, logits_fake)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()
        return loss.detach()

    def generator_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The codec's losses of its reconstruction y against x, both [B, C, N] (y may require grad)."""
        x = x.float()
        with torch.autocast(self.device.type, enabled=False):  # spectral losses in float32 under mixed precision
            losses = {"l1": waveform_l1_loss(y, x), "msspec": self.msspec(y, x)}
        if not self.uses_discriminator:
            return losses
        logits_fake, fmaps_fake = self.discriminator(y)
        with torch.no_grad():  # the real features do not depend on the codec
            _, fmaps_real = self.discriminator(x)
        losses["adv"], losses["feat"] = generator_adversarial_losses(logits_fake, fmaps_fake, fmaps_real)
        return losses

    def codec_update(self, x: torch.Tensor, out: EncodecOutput, opt: torch.optim.Optimizer
                     ) -> dict[str, torch.Tensor | float]:
        """One codec update from its `EncodecOutput`. Returns every loss, detached, for logging."""
        y = out.audio.float()  # [B, C, N]
        surrogate, losses, effective = balanced_surrogate(self.balancer, y, lambda y_: self.generator_losses(x, y_))
        opt.zero_grad(set_to_none=True)
        self.manual_backward(surrogate + self.settings.commitment_weight * out.commitment_loss)
        opt.step()
        with torch.no_grad():
            mel = self.mel_distance(y.detach(), x.float())
        return {**losses, "commitment": out.commitment_loss.detach(), "balanced": effective, "mel": mel,
                "bandwidth": out.bandwidth}

    # -----------------------------------------------------------------------------------------------------
    # Validation: SI-SNR (dB, higher is better) and log-mel L1 distance of the reconstructions

    def on_validation_epoch_start(self) -> None:
        self._valid_sums = torch.zeros(len(VALID_METRICS) + 1, device=self.device)  # metric sums, then count
        self._examples = None

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        x = batch  # [B, C, N]
        with torch.autocast(self.device.type, enabled=False):  # float32, as in training
            y = self.codec(x).audio  # eval mode: no codebook update, no straight-through
        # SI-SNR over the whole segment (audiocraft cuts 5 s frames; our segments are that short or shorter).
        metrics = {"si_snr": -si_snr_loss(y, x, self.codec.sample_rate, segment=None),
                   "mel": self.mel_distance(y, x), "l1": waveform_l1_loss(y, x)}
        self.log_dict({f"valid/{k}": v for k, v in metrics.items()}, sync_dist=True, batch_size=x.shape[0])
        B = x.shape[0]
        self._valid_sums += torch.stack([metrics[k].detach() * B for k in VALID_METRICS] + [x.new_tensor(B)])
        if batch_idx == 0:
            self._examples = (x[:AUDIO_EXAMPLES].cpu(), y[:AUDIO_EXAMPLES].cpu())

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self._valid_sums, reduce_op="sum")  # over all processes
        if sums[-1] == 0:
            return
        means = (sums[:-1] / sums[-1]).tolist()
        entry = {"step": self.codec_step, **dict(zip(VALID_METRICS, means, strict=True))}
        valid = self.history["valid"]
        if valid and valid[-1]["step"] == entry["step"]:
            valid.pop()  # the same step validated twice (periodic and final): keep the latest
        valid.append(entry)
        if self.trainer.is_global_zero:
            self.log_examples()

    def log_examples(self) -> None:
        """Audio and mel spectrograms of a few validation reconstructions, to TensorBoard."""
        if not isinstance(self.logger, TensorBoardLogger) or self._examples is None:
            return
        board, step, rate = self.logger.experiment, self.codec_step, self.codec.sample_rate
        reference, reconstruction = self._examples  # [b, C, N] each
        for i in range(reference.shape[0]):
            board.add_audio(f"audio/{i}/reference", reference[i].mean(0).clamp(-1, 1), step, rate)
            board.add_audio(f"audio/{i}/reconstruction", reconstruction[i].mean(0).clamp(-1, 1), step, rate)
            mels = self.mel_distance.mel(torch.stack([reference[i], reconstruction[i]]).to(self.device))
            board.add_figure(f"spectrogram/{i}", spectrogram_figure(mels.cpu(), ["reference", "reconstruction"]),
                             step)

    # -----------------------------------------------------------------------------------------------------
    # Checkpoints: Lightning saves weights, optimizers and step counts; we add what it cannot know.

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["settings"] = self.settings.to_dict()
        checkpoint["codec_config"] = asdict(self.codec.config)
        # The Balancer has no state_dict: its gradient-norm EMA lives in two dicts of floats.
        checkpoint["balancer"] = {"norm_sum": dict(self.balancer._norm_sum),
                                  "weight_sum": dict(self.balancer._weight_sum)}
        checkpoint["history"] = {k: list(v) for k, v in self.history.items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.balancer._norm_sum = dict(checkpoint["balancer"]["norm_sum"])
        self.balancer._weight_sum = dict(checkpoint["balancer"]["weight_sum"])
        self.history = {k: list(v) for k, v in checkpoint["history"].items()}

"""MusicGen's language-model training as a LightningModule (MusicGen paper section 2; audiocraft's MusicGenSolver).

One training step, on cached codes [B, K, T] and B captions:
1. Condition dropout for classifier-free guidance: with probability `cfg_dropout` every description of the
   batch becomes the null one (one coin per batch, as audiocraft's `ClassifierFreeGuidanceDropout`), so the
   model also learns the unconditional distribution that CFG subtracts at generation time.
2. Sentence dropout (off by default): each sentence of a description but the first is dropped with probability
   `sentence_dropout`. Captions written as a headline and then details ("Lo-fi funk. Medium tempo, 88 BPM, ...")
   then also teach the headline alone, the way people prompt. It stands in for audiocraft's text augmentation,
   which drops or merges the metadata fields of its music dataset (`augment_music_info_description`).
   Then word dropout: each word of each description is dropped with probability `word_dropout` (audiocraft's
   T5 conditioner `word_dropout`), on the text before the conditioner, whatever the conditioner.
3. The text conditioner and the LM's projection give cond [B, L, D] (null descriptions: zero vectors).
4. Teacher forcing over the delay pattern: the LM reads the T + 1 first pattern steps and predicts the next
   one; the loss is each codebook's cross-entropy over the frames it can predict, averaged over codebooks
   (lm/losses.py; audiocraft `MusicGenSolver._compute_cross_entropy`).
AdamW with a linear warmup and a cosine decay; the gradient norm is clipped by the Trainer.

The frozen parts (the codec, a T5 encoder) are not registered submodules: they stay out of the checkpoints,
the optimizer and DDP, and follow the module to its device when training or validation starts.

Deviations from audiocraft's solver: no EMA of the weights; no "merge/drop other attributes" text augmentation
(we have descriptions only; sentence dropout plays its part); windows of files shorter than a segment are not
padded (see training/lm_data.py).

Shape legend: B batch, K codebooks, T frames, L text tokens, D model width, V codebook size.
"""

import math
import re
from dataclasses import asdict, dataclass

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from encodec import EncodecModel
from inference import MusicGen
from lm.losses import LMLoss, delayed_cross_entropy, teacher_forcing_inputs
from lm.model import MusicGenLM
from training.lm_settings import LMTrainSettings


def condition_dropout(captions: list[str], p: float, generator: torch.Generator | None = None) -> list[str]:
    """With probability p, the whole batch's descriptions become the null one ("") (one coin per batch)."""
    if p > 0 and float(torch.rand((), generator=generator)) < p:
        return [""] * len(captions)
    return list(captions)


def drop_words(text: str, p: float, generator: torch.Generator | None = None) -> str:
    """Each whitespace-separated word of `text` is dropped with probability p (p = 1 leaves "")."""
    if p <= 0:
        return text
    words = text.split()
    keep = torch.rand(len(words), generator=generator) >= p  # [words]
    return " ".join(word for word, kept in zip(words, keep.tolist(), strict=True) if kept)


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def drop_sentences(text: str, p: float, generator: torch.Generator | None = None) -> str:
    """Each sentence of `text` but the first is dropped with probability p (sentences end with . ! or ?)."""
    if p <= 0:
        return text
    first, *rest = SENTENCE_END.split(text.strip())
    keep = torch.rand(len(rest), generator=generator) >= p  # [sentences - 1]
    return " ".join([first, *(sentence for sentence, kept in zip(rest, keep.tolist(), strict=True) if kept)])


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor of update `step`: linear from 0 over `warmup` updates, then a half cosine down to 0 at
    `total` (audiocraft's CosineLRScheduler with lr_min_ratio 0)."""
    if step < warmup:
        return step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def init_lm_weights(lm: MusicGenLM) -> None:
    """audiocraft's training init (`weight_init=gaussian`, `depthwise_init=current`; `modules/transformer.py`).

    Linear weights ~ truncated normal (±3 std), std = 1 / sqrt(fan_in), divided by sqrt(2 * (i + 1)) inside
    layer i (deeper layers start smaller); embeddings std 1 / sqrt(D); biases zero. Layer norms keep (1, 0).
    The text projection is the conditioner's in audiocraft and keeps PyTorch's default init.
    """

    def init(module: nn.Module, depth: int | None) -> None:
        for m in module.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                fan_in = m.in_features if isinstance(m, nn.Linear) else m.embedding_dim
                std = 1 / math.sqrt(fan_in) / (math.sqrt(2 * depth) if depth else 1)
                nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    init(lm.embeddings, None)
    for i, layer in enumerate(lm.transformer.layers):
        init(layer, i + 1)
    init(lm.heads, None)


@dataclass
class FrozenParts:
    """What the training uses but does not train: the codec (examples, export) and a frozen text encoder."""

    codec: EncodecModel
    text: nn.Module | None  # a frozen T5 conditioner; None when the text conditioner trains (then `module.text`)


class LMTrainingModule(L.LightningModule):
    """The LM, its text conditioner, the objective, the optimizer and the generated examples.

    Args:
        settings: the run's settings (objective, optimizer, examples).
        lm: the language model (new, or loaded to fine-tune).
        text: the text conditioner; trained with the LM when it has trainable parameters (lookup table),
            kept frozen otherwise (T5).
        codec: the codec of the tokens (only to decode the generated examples and to export).
        sample_captions: the descriptions of the examples generated every `settings.sample_every` steps.
    """

    def __init__(self, settings: LMTrainSettings, lm: MusicGenLM, text: nn.Module, codec: EncodecModel,
                 sample_captions: list[str | None] = ()):
        super().__init__()
        self.settings = settings
        self.lm = lm.train()
        trains_text = any(p.requires_grad for p in text.parameters())
        self.text = text.train() if trains_text else None
        self.frozen = FrozenParts(codec.eval(), None if trains_text else text.eval())
        self.sample_captions = list(sample_captions)
        self.history: dict[str, list[dict]] = {"train": [], "valid": []}  # for the loss curve and the summary
        self._valid_sums = torch.zeros(0)

    @property
    def conditioner(self) -> nn.Module:
        return self.text if self.text is not None else self.frozen.text

    def musicgen(self) -> MusicGen:
        """The model being trained as an inference pipeline (shares the weights)."""
        return MusicGen(self.lm, self.frozen.codec, self.conditioner, max_duration=self.settings.segment_seconds)

    def on_fit_start(self) -> None:
        self._place_frozen_parts()

    def on_train_start(self) -> None:
        if self.settings.sample_every and self.global_step == 0 and self.trainer.is_global_zero:
            self.log_samples()  # the model before training, to compare the later samples with

    def on_validation_start(self) -> None:
        self._place_frozen_parts()

    def _place_frozen_parts(self) -> None:
        self.frozen.codec.to(self.device)
        if self.frozen.text is not None:
            self.frozen.text.to(self.device)

    # -----------------------------------------------------------------------------------------------------
    # The objective

    def condition(self, captions: list[str]) -> torch.Tensor:
        """Descriptions ("" = null) -> cond [B, L, D]. The text encoder runs in float32 (as in inference)."""
        with torch.autocast(self.device.type, enabled=False):
            states, mask = self.conditioner(captions)  # [B, L, D_text], [B, L]
        return self.lm.project_condition(states, mask)  # [B, L, D]

    def compute_loss(self, codes: torch.Tensor, captions: list[str]) -> LMLoss:
        """Teacher-forced cross-entropy of codes [B, K, T] given their descriptions."""
        delays, special = self.lm.config.delays, self.lm.config.special_token
        inputs = teacher_forcing_inputs(codes, delays, special)  # [B, K, T + 1]
        logits = self.lm(inputs, self.condition(captions))  # [B, K, T + 1, V]
        return delayed_cross_entropy(logits, codes, delays)

    def training_step(self, batch: tuple[torch.Tensor, list[str]], batch_idx: int) -> torch.Tensor:
        codes, captions = batch  # [B, K, T], B descriptions
        captions = condition_dropout(list(captions), self.settings.cfg_dropout)  # CFG dropout: all or nothing
        captions = [drop_words(drop_sentences(text, self.settings.sentence_dropout), self.settings.word_dropout)
                    for text in captions]
        out = self.compute_loss(codes, captions)
        metrics = {**loss_metrics(out), "lr": self.lr_schedulers().get_last_lr()[0]}
        self.log_dict({f"train/{k}": v for k, v in metrics.items()}, batch_size=codes.shape[0])
        step = self.global_step + 1  # the update this batch makes
        if step % self.settings.log_every == 0:
            self.history["train"].append({"step": step, **{k: float(v) for k, v in metrics.items()}})
        return out.loss

    def configure_optimizers(self) -> dict:
        s = self.settings
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=s.lr, betas=tuple(s.betas), weight_decay=s.weight_decay, eps=1e-8)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, s.warmup_steps,
                                                                                           s.max_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # -----------------------------------------------------------------------------------------------------
    # Validation: the same loss with the true descriptions (no dropout), on fixed windows

    def on_validation_epoch_start(self) -> None:
        K = self.lm.config.num_codebooks
        self._valid_sums = torch.zeros(2 + 2 * K, device=self.device)  # loss, K losses, K accuracies, count

    def validation_step(self, batch: tuple[torch.Tensor, list[str]], batch_idx: int) -> None:
        codes, captions = batch  # [B, K, T]
        out = self.compute_loss(codes, list(captions))
        B = codes.shape[0]
        values = torch.cat([out.loss[None], out.per_codebook, out.accuracy]).detach().float()
        self._valid_sums += torch.cat([values * B, values.new_tensor([B])])

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self._valid_sums, reduce_op="sum")  # over all processes
        if sums[-1] == 0:
            return
        K = self.lm.config.num_codebooks
        means = sums[:-1] / sums[-1]
        out = LMLoss(means[0], means[1:1 + K], means[1 + K:])
        metrics = loss_metrics(out)
        self.log_dict({f"valid/{k}": v for k, v in metrics.items()}, sync_dist=True)  # equal on every process
        entry = {"step": self.global_step, **{k: float(v) for k, v in metrics.items()}}
        valid = self.history["valid"]
        if valid and valid[-1]["step"] == entry["step"]:
            valid.pop()  # the same step validated twice (periodic and final): keep the latest
        valid.append(entry)

    # -----------------------------------------------------------------------------------------------------
    # Generated examples, to TensorBoard

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        every = self.settings.sample_every
        if every and self.global_step % every == 0 and self.trainer.is_global_zero:
            self.log_samples()

    @torch.no_grad()
    def log_samples(self) -> None:
        """Generate `settings.sample_duration` seconds for each sample caption with the current weights."""
        if not isinstance(self.logger, TensorBoardLogger) or not self.sample_captions:
            return
        mg = self.musicgen()
        self.lm.eval()
        try:
            wav = mg.generate(self.sample_captions, duration=self.settings.sample_duration, seed=self.settings.seed)
        finally:
            self.lm.train()
        board, step = self.logger.experiment, self.global_step
        for i, caption in enumerate(self.sample_captions):
            board.add_audio(f"samples/{i}", wav[i].mean(0).clamp(-1, 1).float().cpu(), step, mg.sample_rate)
            board.add_text(f"samples/{i}/description", caption or "(none: unconditional)", step)

    # -----------------------------------------------------------------------------------------------------
    # Checkpoints: Lightning saves the weights, the optimizer, the schedule and the step; we add the rest.

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["settings"] = self.settings.to_dict()
        checkpoint["lm_config"] = asdict(self.lm.config)
        checkpoint["history"] = {k: list(v) for k, v in self.history.items()}
        if self.settings.lora_rank:  # the adapter alone: the frozen weights are --init's
            trained = self.trained_names()
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trained}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = {k: list(v) for k, v in checkpoint["history"].items()}
        if self.settings.lora_rank:
            saved, trained = set(checkpoint["state_dict"]), self.trained_names()
            if saved != trained:
                raise ValueError(f"the checkpoint's adapter does not fit this run's: {len(saved - trained)} "
                                 f"tensors unexpected, {len(trained - saved)} missing (e.g. "
                                 f"{next(iter(sorted(saved ^ trained)))})")
            checkpoint["state_dict"] = {**self.state_dict(), **checkpoint["state_dict"]}  # frozen ones from --init

    def trained_names(self) -> set[str]:
        return {name for name, p in self.named_parameters() if p.requires_grad}


def loss_metrics(out: LMLoss) -> dict[str, torch.Tensor]:
    """{"loss", "ce_q0", ..., "acc_q0", ...} of an LMLoss, detached."""
    metrics = {"loss": out.loss.detach()}
    metrics |= {f"ce_q{k}": v for k, v in enumerate(out.per_codebook.detach())}
    metrics |= {f"acc_q{k}": v for k, v in enumerate(out.accuracy.detach())}
    return metrics

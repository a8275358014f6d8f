"""Residual vector quantization (RVQ), as in SoundStream and EnCodec (paper section 3.2).

A codebook holds V vectors of size D. Quantizing a latent picks the nearest vector; RVQ repeats this on
what is left over: codebook 1 quantizes the latent, codebook 2 quantizes the residual error of codebook 1,
and so on, so each extra codebook refines the reconstruction and adds log2(V) bits per frame.

Codebooks are not trained by gradient descent but as running k-means (VQ-VAE paper, appendix A.1):
an exponential moving average (EMA) of the vectors assigned to each code, started from k-means on the
first batch, with codes that fall out of use restarted on random latents of the current batch.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def sample_vectors(x: torch.Tensor, num: int) -> torch.Tensor:
    """`num` rows of x [N, D] drawn at random: without replacement when N >= num, else with."""
    if x.shape[0] >= num:
        index = torch.randperm(x.shape[0], device=x.device)[:num]
    else:
        index = torch.randint(0, x.shape[0], (num,), device=x.device)
    return x[index]  # [num, D]


def nearest_code(x: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """Index of the closest codebook vector for every row: x [N, D], embed [V, D] -> [N].

    argmin ||x - e||^2 = argmax -(||x||^2 - 2 x.e + ||e||^2), written as one matmul. The ||x||^2 term does
    not change the argmax but is kept so that float rounding matches the reference implementations.
    """
    dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ embed.t() + embed.pow(2).sum(1)[None])  # [N, V]
    return dist.argmax(dim=-1)


def kmeans(x: torch.Tensor, num_clusters: int, num_iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on x [N, D]. Returns the means [V, D] and the cluster sizes [V].

    Starts from random data points; an empty cluster keeps its previous mean.
    """
    means = sample_vectors(x, num_clusters)
    for _ in range(num_iters):
        assign = nearest_code(x, means)  # [N]
        counts = torch.bincount(assign, minlength=num_clusters)  # [V]
        sums = torch.zeros_like(means).index_add_(0, assign, x)  # [V, D]
        empty = counts == 0
        means = torch.where(empty[:, None], means, sums / counts.clamp(min=1)[:, None].to(x.dtype))
    counts = torch.bincount(nearest_code(x, means), minlength=num_clusters)
    return means, counts


class Codebook(nn.Module):
    """V vectors of size D with the EMA training rule (k-means init, Laplace smoothing, dead-code restart).

    Args:
        dim: vector size D; bins: number of codes V.
        decay: EMA decay of the running counts and sums (0.99).
        epsilon: Laplace smoothing of the counts (1e-5).
        kmeans_iters: Lloyd iterations of the k-means initialisation on the first training batch.
        threshold_ema_dead_code: codes whose EMA count falls below this are restarted (2).
    Buffers, all saved in checkpoints: `inited` [1], `cluster_size` [V] (EMA of how many latents each
    code received), `embed` [V, D] (the codebook), `embed_avg` [V, D] (EMA of the sum of those latents).
    """

    def __init__(self, dim: int, bins: int, *, decay: float = 0.99, epsilon: float = 1e-5,
                 kmeans_iters: int = 50, threshold_ema_dead_code: float = 2.0):
        super().__init__()
        self.bins, self.decay, self.epsilon = bins, decay, epsilon
        self.kmeans_iters, self.threshold_ema_dead_code = kmeans_iters, threshold_ema_dead_code
        self.register_buffer("inited", torch.zeros(1))
        self.register_buffer("cluster_size", torch.zeros(bins))
        self.register_buffer("embed", torch.zeros(bins, dim))
        self.register_buffer("embed_avg", torch.zeros(bins, dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] -> code indices [...]."""
        return nearest_code(x.reshape(-1, x.shape[-1]), self.embed).view(x.shape[:-1])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Code indices [...] -> vectors [..., D]."""
        return F.embedding(codes, self.embed)

    @torch.no_grad()
    def init_with_kmeans(self, x: torch.Tensor) -> None:
        """k-means initialisation on the first training batch x [N, D].

        Deviation from audiocraft/encodec: they set `embed_avg = means` beside `cluster_size = counts`, so the
        first EMA step computes embed = means / counts and throws the k-means result away. We store the
        consistent running sum `means * counts`.
        """
        means, counts = kmeans(x, self.bins, self.kmeans_iters)
        self.embed.copy_(means)
        self.embed_avg.copy_(means * counts[:, None])
        self.cluster_size.copy_(counts)
        self.inited.fill_(1)

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step of the codebook towards the latents x [N, D] assigned to `codes` [N]."""
        onehot = F.one_hot(codes, self.bins).to(x.dtype)  # [N, V]
        # EMA codebook update: running counts and running sums of the assigned latents.
        self.cluster_size.lerp_(onehot.sum(0), 1 - self.decay)
        self.embed_avg.lerp_(onehot.t() @ x, 1 - self.decay)
        # Laplace smoothing keeps rarely used codes away from a division by ~0.
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.bins * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        self.restart_dead_codes(x)

    @torch.no_grad()
    def restart_dead_codes(self, x: torch.Tensor) -> None:
        """Dead-code restart: codes used less than `threshold_ema_dead_code` times (EMA) become random latents.

        Deviation from audiocraft/encodec: there the restart writes only `embed`, which the EMA update of the
        same step then overwrites, so a dead code never actually moves. Here the restart runs after the EMA
        update and also resets the code's running statistics (count = threshold, sum = vector * threshold),
        so the new vector survives the next updates.
        """
        dead = self.cluster_size < self.threshold_ema_dead_code  # [V]
        if not dead.any():
            return
        fresh = sample_vectors(x, self.bins)  # [V, D]
        self.embed.copy_(torch.where(dead[:, None], fresh, self.embed))
        self.cluster_size.masked_fill_(dead, self.threshold_ema_dead_code)
        self.embed_avg.copy_(torch.where(dead[:, None], self.embed * self.threshold_ema_dead_code, self.embed_avg))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize x [N, D]; in training mode also update the codebook. Returns (vectors [N, D], codes [N])."""
        latents = x.detach().to(self.embed.dtype)  # the codebook and its statistics stay float32 under autocast
        if self.training and not self.inited.item():
            self.init_with_kmeans(latents)
        codes = nearest_code(latents, self.embed)  # [N]
        quantized = self.decode(codes).to(x.dtype)  # [N, D], looked up before this step's update
        if self.training:
            self.update(latents, codes)
        return quantized, codes


class VectorQuantizer(nn.Module):
    """One RVQ stage: `codebook` applied to every frame of a [B, D, T] latent."""

    def __init__(self, codebook: Codebook):
        super().__init__()
        self.codebook = codebook

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.codebook.encode(x.transpose(1, 2))  # [B, T]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.codebook.decode(codes).transpose(1, 2)  # [B, D, T]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, D, T = x.shape
        flat = x.transpose(1, 2).reshape(B * T, D)  # [B*T, D]
        quantized, codes = self.codebook(flat)
        return quantized.view(B, T, D).transpose(1, 2), codes.view(B, T)  # [B, D, T], [B, T]


@dataclass
class QuantizedResult:
    """Output of `ResidualVectorQuantizer.forward`.

    Attributes:
        quantized: [B, D, T] the sum of the used codebooks' vectors (straight-through in training).
        codes: [B, K, T] int64, K = codebooks used.
        bandwidth: kbps that K codebooks cost at the model's frame rate.
        commitment_loss: scalar, mean over codebooks of mse(x_k, quantized_k), pulling the encoder
            towards its codes (the codebooks themselves learn by EMA, not by this loss).
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    bandwidth: float
    commitment_loss: torch.Tensor


class ResidualVectorQuantizer(nn.Module):
    """K codebooks applied in turn to the residual of the previous ones.

    Args:
        dim: latent width D.
        n_q: number of codebooks K.
        bins: codes per codebook V.
        q_dropout: in training, use a random number of codebooks in 1..K (quantizer dropout), so one model
            serves every bandwidth. One number per batch, as audiocraft does (descript-audio-codec draws one
            per sample).
        frame_rate: latent frames per second, for the reported bandwidth.
        decay, epsilon, kmeans_iters, threshold_ema_dead_code: how each codebook learns, see `Codebook`.
    """

    def __init__(self, dim: int, n_q: int, bins: int, q_dropout: bool = False, frame_rate: float = 50.0, *,
                 decay: float = 0.99, epsilon: float = 1e-5, kmeans_iters: int = 50,
                 threshold_ema_dead_code: float = 2.0):
        super().__init__()
        self.n_q, self.bins, self.q_dropout, self.frame_rate = n_q, bins, q_dropout, frame_rate
        self.layers = nn.ModuleList([
            VectorQuantizer(Codebook(dim, bins, decay=decay, epsilon=epsilon, kmeans_iters=kmeans_iters,
                                     threshold_ema_dead_code=threshold_ema_dead_code))
            for _ in range(n_q)
        ])

    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Latents [B, D, T] -> codes [B, K, T] using the first `n_q` codebooks (all by default)."""
        residual = x
        codes = []
        for layer in self.layers[: n_q or self.n_q]:
            idx = layer.encode(residual)  # [B, T]
            residual = residual - layer.decode(idx)
            codes.append(idx)
        return torch.stack(codes, dim=1)  # [B, K, T]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, K, T] (K <= n_q, the first K codebooks) -> the summed vectors [B, D, T]."""
        if codes.shape[1] > self.n_q:
            raise ValueError(f"got {codes.shape[1]} codebooks, the quantizer has {self.n_q}")
        quantized = self.layers[0].decode(codes[:, 0])
        for k in range(1, codes.shape[1]):
            quantized = quantized + self.layers[k].decode(codes[:, k])
        return quantized  # [B, D, T]

    def forward(self, x: torch.Tensor, n_q: int | None = None) -> QuantizedResult:
        """Quantize latents [B, D, T]; in training this also updates the codebooks."""
        n_q = n_q or self.n_q
        if self.training and self.q_dropout:  # quantizer dropout: one K for the whole batch
            n_q = int(torch.randint(1, n_q + 1, (1,)).item())
        residual = x
        quantized = torch.zeros_like(x)
        codes, losses = [], []
        for layer in self.layers[:n_q]:
            q, idx = layer(residual)  # [B, D, T], [B, T]; q carries no gradient
            losses.append(F.mse_loss(residual, q))  # commitment loss of this stage
            residual = residual - q
            quantized = quantized + q
            codes.append(idx)
        if self.training:
            # Straight-through estimator, once on the sum (not per stage, see encodec issue 25 and
            # docs/architecture.md 2.2): the stages are detached, so every residual is x minus constants and
            # each stage's commitment loss reaches the encoder; the decoder's gradient reaches x unchanged.
            quantized = x + (quantized - x).detach()
        bandwidth = n_q * math.log2(self.bins) * self.frame_rate / 1000
        return QuantizedResult(quantized, torch.stack(codes, dim=1), bandwidth, torch.stack(losses).mean())

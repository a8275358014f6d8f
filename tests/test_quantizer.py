"""Residual vector quantizer: straight-through gradients, EMA arithmetic, k-means, dead codes, bandwidth."""

import pytest
import torch

from encodec import get_preset
from encodec.quantizer import Codebook, ResidualVectorQuantizer, kmeans


def test_straight_through_gradient_is_exactly_one():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dim=16, n_q=8, bins=8, kmeans_iters=10).train()
    x = torch.randn(1, 16, 2048, requires_grad=True)
    out = rvq(x)
    assert out.quantized.shape == x.shape
    out.quantized.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_decode_of_encode_equals_quantized_output_in_eval():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dim=8, n_q=4, bins=32)
    rvq.train()(torch.randn(4, 8, 100))  # k-means initialisation gives real codebooks
    rvq.eval()
    x = torch.randn(2, 8, 37)
    out = rvq(x)
    codes = rvq.encode(x)
    assert torch.equal(codes, out.codes)
    assert torch.equal(rvq.decode(codes), out.quantized)
    assert len(codes.unique()) > 8  # the test would prove nothing if every code were the same


def test_each_codebook_quantizes_the_previous_residual():
    rvq = ResidualVectorQuantizer(dim=1, n_q=2, bins=3).eval()
    rvq.layers[0].codebook.embed.copy_(torch.tensor([[0.0], [1.0], [2.0]]))
    rvq.layers[1].codebook.embed.copy_(torch.tensor([[-0.25], [0.0], [0.25]]))
    x = torch.tensor([[[1.3, 0.05, 1.8]]])  # [B=1, D=1, T=3]
    assert rvq.encode(x).tolist() == [[[1, 0, 2], [2, 1, 0]]]
    torch.testing.assert_close(rvq.decode(rvq.encode(x)), torch.tensor([[[1.25, 0.0, 1.75]]]))


def _codebook(embed, cluster_size, **kwargs) -> Codebook:
    book = Codebook(dim=embed.shape[1], bins=embed.shape[0], **kwargs)
    book.embed.copy_(embed)
    book.cluster_size.copy_(cluster_size)
    book.embed_avg.copy_(embed * cluster_size[:, None])
    book.inited.fill_(1)
    return book.train()


def test_ema_update_matches_hand_computation():
    # codes [[0, 0], [10, 10]] each seen once; a batch puts two latents on code 0 and one on code 1.
    book = _codebook(torch.tensor([[0.0, 0.0], [10.0, 10.0]]), torch.tensor([1.0, 1.0]),
                     decay=0.5, epsilon=0.0, threshold_ema_dead_code=0.0)
    x = torch.tensor([[1.0, 1.0], [2.0, 2.0], [9.0, 9.0]])
    quantized, codes = book(x)
    assert codes.tolist() == [0, 0, 1]
    assert quantized.tolist() == [[0, 0], [0, 0], [10, 10]]  # looked up before the update
    # cluster_size = 0.5 * [1, 1] + 0.5 * [2, 1];  embed_avg = 0.5 * [[0, 0], [10, 10]] + 0.5 * [[3, 3], [9, 9]]
    assert book.cluster_size.tolist() == [1.5, 1.0]
    assert book.embed_avg.tolist() == [[1.5, 1.5], [9.5, 9.5]]
    assert book.embed.tolist() == [[1.0, 1.0], [9.5, 9.5]]


def test_laplace_smoothing_keeps_unused_codes_finite():
    book = _codebook(torch.tensor([[0.0], [5.0], [100.0]]), torch.tensor([1.0, 1.0, 0.0]),
                     decay=0.9, epsilon=1e-5, threshold_ema_dead_code=0.0)
    book(torch.tensor([[0.1], [4.9]]))
    assert torch.isfinite(book.embed).all()
    expected_sizes = torch.tensor([1.0, 1.0, 0.0])  # 0.9 * [1, 1, 0] + 0.1 * [1, 1, 0]
    total = expected_sizes.sum()
    smoothed = (expected_sizes + 1e-5) / (total + 3e-5) * total
    torch.testing.assert_close(book.embed[:2, 0], book.embed_avg[:2, 0] / smoothed[:2])


def test_kmeans_init_on_first_batch_finds_the_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2) for c in centres])
    book = Codebook(dim=2, bins=3, kmeans_iters=20, threshold_ema_dead_code=0.0).train()
    assert book.inited.item() == 0
    book(x)
    assert book.inited.item() == 1
    found = sorted(book.embed.tolist())
    for got, want in zip(found, sorted(centres.tolist()), strict=True):
        assert got == pytest.approx(want, abs=0.1)


def test_kmeans_returns_a_fixed_point_of_lloyd():
    torch.manual_seed(1)
    x = torch.randn(200, 3)
    means, counts = kmeans(x, 8, 30)
    assert counts.sum() == 200
    assign = torch.cdist(x, means).argmin(1)
    for c in range(8):
        if counts[c] > 0:
            torch.testing.assert_close(means[c], x[assign == c].mean(0), atol=1e-5, rtol=0)


def test_dead_codes_are_restarted_on_batch_vectors_and_stay_there():
    torch.manual_seed(0)
    embed = torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0], [2.0, 2.0]])
    book = _codebook(embed, torch.tensor([50.0, 50.0, 0.5, 50.0]), threshold_ema_dead_code=2.0)
    x = torch.rand(64, 2) * 2
    book(x)
    assert book.embed[2].tolist() in x.tolist()  # code 2 was dead (used 0.5 times): now a batch latent
    assert book.cluster_size[2].item() == 2.0
    live = [0, 1, 3]
    assert (book.embed[live] - embed[live]).abs().max() < 0.1  # live codes only moved by the EMA
    restarted = book.embed[2].clone()
    book(restarted[None].repeat(10, 1))
    torch.testing.assert_close(book.embed[2], restarted)  # the next EMA step keeps it


def test_commitment_loss_is_mse_between_latent_and_code():
    rvq = ResidualVectorQuantizer(dim=1, n_q=1, bins=2, threshold_ema_dead_code=0.0).train()
    book = rvq.layers[0].codebook
    book.embed.copy_(torch.tensor([[0.0], [1.0]]))
    book.embed_avg.copy_(book.embed)
    book.cluster_size.fill_(1)
    book.inited.fill_(1)
    out = rvq(torch.tensor([[[0.25, 0.5, 0.875]]]))
    assert out.commitment_loss.item() == pytest.approx((0.25**2 + 0.5**2 + 0.125**2) / 3)


def test_bandwidth_rule():
    config = get_preset("encodec-32khz")
    assert config.bandwidth == pytest.approx(2.2)
    assert [config.num_codebooks_for_bandwidth(bw) for bw in (0.55, 1.1, 1.5, 2.2, 6.0)] == [1, 2, 2, 4, 4]
    with pytest.raises(ValueError):
        config.num_codebooks_for_bandwidth(0)


def test_quantizer_dropout_picks_1_to_n_q_codebooks_in_training_only():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dim=4, n_q=6, bins=8, q_dropout=True, frame_rate=75).train()
    counts = {rvq(torch.randn(2, 4, 20)).codes.shape[1] for _ in range(40)}
    assert counts <= set(range(1, 7)) and len(counts) > 3
    out = rvq.eval()(torch.randn(2, 4, 20))
    assert out.codes.shape[1] == 6
    assert out.bandwidth == pytest.approx(6 * 3 * 75 / 1000)


def test_bfloat16_latents_train_a_float32_codebook():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dim=4, n_q=2, bins=8, kmeans_iters=5).train()
    x = torch.randn(2, 4, 30, dtype=torch.bfloat16, requires_grad=True)
    out = rvq(x)
    assert out.quantized.dtype == torch.bfloat16
    assert rvq.layers[0].codebook.embed.dtype == torch.float32 and rvq.layers[0].codebook.inited.item() == 1
    out.quantized.float().sum().backward()
    assert x.grad is not None

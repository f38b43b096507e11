"""scETM numerics (``_core.etm``): the likelihood and its gradients, mini-batches, training."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scintegrate._core.etm import (
    BufferPool,
    CSRData,
    ETMModule,
    _MultinomialNLL,
    fit_etm,
    kl_schedule,
)

# the hyperparameters fit_etm takes (tl.etm declares their defaults); small for speed
TRAINING = {
    "emb_dim": 4,
    "hidden_sizes": (8,),
    "dropout": 0.1,
    "batch_size": 2000,
    "lr": 5e-3,
    "lr_decay": 6e-5,
    "kl_weight": 1.0,
    "kl_warmup": 1 / 3,
    "grad_clip": 50.0,
    "eval_every": 10,
}


def _counts(rng, n=12, g=9, density=0.5):
    X = rng.poisson(2.0, size=(n, g)) * (rng.random((n, g)) < density)
    X[:, 0] += 1  # no empty cell
    return X.astype(np.float64)


def test_multinomial_nll_matches_dense_reference():
    rng = np.random.default_rng(0)
    X = _counts(rng)
    codes = rng.integers(0, 3, X.shape[0])
    data = CSRData(sp.csr_matrix(X), codes, "cpu", torch.float64)
    batch = data.batch_of(None)
    theta = torch.softmax(torch.randn(X.shape[0], 4, dtype=torch.float64), 1)
    beta = torch.randn(4, X.shape[1], dtype=torch.float64) * 3
    bias = torch.randn(3, X.shape[1], dtype=torch.float64)
    rows = batch.cells  # the mini-batch orders cells by batch
    got = _MultinomialNLL.apply(theta, beta, bias, batch, BufferPool())
    logits = theta @ beta + bias[torch.as_tensor(codes[rows])]
    want = -(torch.as_tensor(X[rows]) * torch.log_softmax(logits, 1)).sum(1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-10)


def test_multinomial_nll_reused_buffer_gives_the_same_gradients():
    """The pooled logits buffer is overwritten by backward; reuse must not leak between steps."""
    rng = np.random.default_rng(3)
    X = _counts(rng, n=9, g=20)
    data = CSRData(sp.csr_matrix(X), rng.integers(0, 2, 9), "cpu", torch.float64)
    batch = data.batch_of(None)
    pool = BufferPool()
    grads = []
    for scale in (1.0, 3.0, 1.0):  # the third step reuses the buffer left by the second
        theta = torch.softmax(
            scale
            * torch.randn(9, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)),
            1,
        ).requires_grad_()
        beta = torch.randn(
            3, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
        ).requires_grad_()
        # an extra forward without backward in between must not corrupt the pending one
        nll = _MultinomialNLL.apply(theta, beta, None, batch, pool)
        _MultinomialNLL.apply(theta.detach(), beta.detach() * 2, None, batch, pool)
        nll.sum().backward()
        grads.append((nll.detach(), theta.grad, beta.grad))
    fresh_theta = grads[0]
    for got, want in zip(grads[2], fresh_theta, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.equal(grads[1][1], grads[0][1])


def test_multinomial_nll_gradcheck():
    rng = np.random.default_rng(1)
    X = _counts(rng, n=7, g=6)
    data = CSRData(sp.csr_matrix(X), rng.integers(0, 2, 7), "cpu", torch.float64)
    batch = data.batch_of(None)
    theta = torch.softmax(torch.randn(7, 3, dtype=torch.float64), 1).requires_grad_()
    beta = torch.randn(3, 6, dtype=torch.float64).requires_grad_()
    bias = torch.randn(2, 6, dtype=torch.float64).requires_grad_()
    pool = BufferPool()  # shared across gradcheck's calls: reuse is exercised
    assert torch.autograd.gradcheck(
        lambda t, b, c: _MultinomialNLL.apply(t, b, c, batch, pool), (theta, beta, bias)
    )


def test_loss_gradients_match_finite_differences():
    """Every parameter of a tiny model (float64), central differences on sampled entries."""
    rng = np.random.default_rng(2)
    X = _counts(rng, n=10, g=8)
    data = CSRData(sp.csr_matrix(X), rng.integers(0, 2, 10), "cpu", torch.float64)
    batch = data.batch_of(None)
    module = ETMModule(
        8,
        3,
        2,
        emb_dim=4,
        hidden_sizes=(5, 4),
        dropout=0.2,
        fixed_emb=rng.random((2, 8)),
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )

    def loss():
        nll, kl = module.loss_terms(batch, generator=torch.Generator().manual_seed(3))
        return (nll + 0.7 * kl).sum()

    module.zero_grad()
    loss().backward()
    checked = 0
    for name, param in module.named_parameters():
        flat = param.data.view(-1)
        grad = param.grad.view(-1)
        for i in rng.choice(flat.numel(), min(2, flat.numel()), replace=False):
            old = flat[i].item()
            with torch.no_grad():
                flat[i] = old + 1e-6
                up = loss().item()
                flat[i] = old - 1e-6
                down = loss().item()
                flat[i] = old
            numeric = (up - down) / 2e-6
            assert grad[i].item() == pytest.approx(numeric, rel=1e-5, abs=1e-6), name
            checked += 1
    assert checked >= 20


def test_minibatch_gathers_the_right_cells():
    rng = np.random.default_rng(3)
    X = _counts(rng, n=30, g=7, density=0.3)
    codes = rng.integers(0, 4, 30)
    data = CSRData(sp.csr_matrix(X), codes, "cpu", torch.float64)
    cells = rng.choice(30, 11, replace=False)
    batch = data.batch_of(cells)
    assert sorted(batch.cells) == sorted(cells)
    assert np.all(np.diff(codes[batch.cells]) >= 0)  # grouped by batch
    dense = np.zeros((11, 7))
    dense[batch.rows.numpy(), batch.indices.numpy()] = batch.counts.numpy()
    np.testing.assert_array_equal(dense, X[batch.cells])
    np.testing.assert_allclose(batch.transposed().to_dense().numpy().T.sum(1), 1.0)
    for code, start, end in batch.groups:
        assert np.all(codes[batch.cells[start:end]] == code)


def test_minibatch_positions_in_32_and_64_bits_agree(monkeypatch):
    # 64-bit positions are used only for blocks of more than 2^31 cells x genes; force them
    from scintegrate._core import etm

    rng = np.random.default_rng(5)
    X = sp.csr_matrix(_counts(rng, n=40, g=9, density=0.3))
    codes = rng.integers(0, 3, 40)
    cells = rng.choice(40, 17, replace=False)
    theta = torch.softmax(torch.randn(17, 4, dtype=torch.float64), 1).requires_grad_()
    beta = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    results = []
    for like in (etm._INT32_LIKE, etm._INT64_LIKE):
        monkeypatch.setattr(etm, "_INT32_LIKE", like)
        batch = CSRData(X, codes, "cpu", torch.float64).batch_of(cells)
        assert (
            batch.indices.dtype
            == batch.flat.dtype
            == batch.t_col.dtype
            == torch.from_numpy(like).dtype
        )
        nll = _MultinomialNLL.apply(theta, beta, bias, batch, BufferPool())
        grads = torch.autograd.grad(nll.sum(), (theta, beta, bias))
        results.append((nll.detach(), *grads))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_kl_schedule():
    assert kl_schedule(0, 30, 1.0, 1 / 3) == 0.0
    assert kl_schedule(5, 30, 1.0, 1 / 3) == pytest.approx(0.5)
    assert kl_schedule(10, 30, 2.0, 1 / 3) == 2.0
    assert kl_schedule(0, 30, 0.3, 0.0) == 0.3


def test_fit_reports_steps_and_stops_early():
    rng = np.random.default_rng(4)
    X = sp.csr_matrix(_counts(rng, n=50, g=12))
    result = fit_etm(X, 3, **{**TRAINING, "batch_size": 20}, max_epochs=6, random_state=rng)
    assert result.n_steps == 6 * 2 and result.n_epochs == 6
    assert result.theta.shape == (50, 3)
    np.testing.assert_allclose(result.theta.sum(1), 1.0)
    stopped = fit_etm(
        X,
        3,
        **{**TRAINING, "lr": 1e-9},
        max_epochs=30,
        early_stopping_patience=2,
        early_stopping_tol=0.5,
        random_state=np.random.default_rng(0),
    )
    assert stopped.stopped_early and stopped.n_epochs < 30


def test_csr_input_is_not_modified():
    """Unsorted CSR input is canonicalised in a private copy, never in place."""
    X = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 1.0]]))
    X.indices[:2] = X.indices[:2][::-1].copy()  # row 0 stored as columns (2, 0)
    X.data[:2] = X.data[:2][::-1].copy()
    X.has_sorted_indices = False
    before = (X.indices.copy(), X.data.copy())
    data = CSRData(X, None, "cpu", torch.float64)
    np.testing.assert_array_equal(X.indices, before[0])
    np.testing.assert_array_equal(X.data, before[1])
    assert data.X.has_canonical_format
    np.testing.assert_array_equal(data.X.toarray(), X.toarray())

"""The NMF numerics against their math: monotone objectives, a slow dense reference, planted factors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from scintegrate._core.nmf import RowColumnData, fit_nmf, initialize, randomized_svd

CONFIGS = [("frobenius", "hals"), ("frobenius", "mu"), ("kl", "mu")]


def poisson_counts(n=60, m=40, k=4, seed=0, density_scale=1.0):
    rng = np.random.default_rng(seed)
    H = rng.gamma(0.5, 1.0, (n, k))
    W = rng.gamma(0.5, 1.0, (m, k)) * density_scale
    return sp.csr_matrix(rng.poisson(H @ W.T).astype(float))


# ---------------------------------------------------------------- slow dense reference
def reference_nmf(X, H, W, objective, solver, n_iter):
    """Textbook updates on dense arrays, one element or column at a time where it matters."""
    X, H, W = np.asarray(X, float), H.copy(), W.copy()
    eps = 1e-12
    for _ in range(n_iter):
        if objective == "frobenius" and solver == "hals":
            XW, WtW = X @ W, W.T @ W
            for r in range(H.shape[1]):  # coordinate minimisation, column by column
                if WtW[r, r] > 0:
                    H[:, r] = np.maximum(0, H[:, r] + (XW[:, r] - H @ WtW[:, r]) / WtW[r, r])
            XtH, HtH = X.T @ H, H.T @ H
            for r in range(W.shape[1]):
                if HtH[r, r] > 0:
                    W[:, r] = np.maximum(0, W[:, r] + (XtH[:, r] - W @ HtH[:, r]) / HtH[r, r])
        elif objective == "frobenius":
            H *= (X @ W) / np.maximum(H @ (W.T @ W), eps)
            W *= (X.T @ H) / np.maximum(W @ (H.T @ H), eps)
        else:  # Lee & Seung KL updates with the full ratio matrix
            ratio = X / np.maximum(H @ W.T, eps)
            H *= (ratio @ W) / np.maximum(W.sum(0), eps)
            ratio = X / np.maximum(H @ W.T, eps)
            W *= (ratio.T @ H) / np.maximum(H.sum(0), eps)
    return H, W


def reference_losses(X, H, W):
    X = np.asarray(X, float)
    M = H @ W.T
    mse = np.mean((X - M) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        xlogx = np.where(X > 0, X * np.log(np.where(X > 0, X, 1) / np.maximum(M, 1e-12)), 0.0)
    kl = np.mean(xlogx - X + M)
    loglik = np.mean(np.where(X > 0, X * np.log(np.maximum(M, 1e-12)), 0.0) - M)
    return mse, kl, loglik


@pytest.mark.parametrize(("objective", "solver"), CONFIGS)
def test_matches_slow_dense_reference(objective, solver):
    X = poisson_counts()
    rng = np.random.default_rng(1)
    H0, W0 = rng.random((60, 4)) + 0.1, rng.random((40, 4)) + 0.1
    result = fit_nmf(X, 4, objective=objective, solver=solver, max_iter=15, tol=0, init=(H0, W0))
    H_ref, W_ref = reference_nmf(X.toarray(), H0, W0, objective, solver, 15)
    np.testing.assert_allclose(result.H, H_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.W, W_ref, rtol=1e-9, atol=1e-12)
    mse, kl, loglik = reference_losses(X.toarray(), result.H, result.W)
    assert result.history["loss"][-1] == pytest.approx(
        mse if objective == "frobenius" else kl, rel=1e-9
    )
    if objective == "kl":
        assert result.history["poisson_loglik"][-1] == pytest.approx(loglik, rel=1e-9)
    # the recorded loss of every iteration is the loss of that iterate: check the first update
    one = fit_nmf(X, 4, objective=objective, solver=solver, max_iter=1, tol=0, init=(H0, W0))
    H1, W1 = reference_nmf(X.toarray(), H0, W0, objective, solver, 1)
    expected = reference_losses(X.toarray(), H1, W1)[0 if objective == "frobenius" else 1]
    assert result.history["loss"][1] == pytest.approx(expected, rel=1e-9)
    assert one.history["loss"][1] == pytest.approx(expected, rel=1e-9)
    initial = reference_losses(X.toarray(), H0, W0)[0 if objective == "frobenius" else 1]
    assert result.history["loss"][0] == pytest.approx(initial, rel=1e-9)


def assert_non_increasing(losses, rel=1e-12):
    losses = np.asarray(losses)
    increases = np.diff(losses) / np.abs(losses[:-1])
    assert increases.max() <= rel, f"objective increased by a relative {increases.max():.3g}"


@pytest.mark.parametrize(("objective", "solver"), CONFIGS)
@pytest.mark.parametrize("init", ["random", "nndsvda"])
def test_objective_never_increases_random_data(objective, solver, init):
    X = poisson_counts(n=200, m=120, k=6, seed=3)
    result = fit_nmf(X, 8, objective=objective, solver=solver, max_iter=150, tol=0, init=init)
    assert_non_increasing(result.history["loss"])
    assert result.history["loss"][-1] < result.history["loss"][0]


@pytest.mark.parametrize(("objective", "solver"), CONFIGS)
def test_objective_never_increases_real_data(cortex_small, objective, solver):
    result = fit_nmf(cortex_small.X, 10, objective=objective, solver=solver, max_iter=100, tol=0)
    assert_non_increasing(result.history["loss"])
    if objective == "kl":
        assert np.all(np.diff(result.history["poisson_loglik"]) >= -1e-12)


@pytest.mark.parametrize(("objective", "solver"), CONFIGS)
def test_sparse_formats_and_dense_agree(objective, solver):
    X = poisson_counts(n=80, m=50, k=5, seed=2)
    inputs = [X, X.tocsc(), sp.csr_array(X), sp.csc_array(X), X.toarray(), X.astype(np.float32)]
    results = [
        fit_nmf(x, 5, objective=objective, solver=solver, max_iter=30, tol=0, random_state=4)
        for x in inputs
    ]
    for other in results[1:]:
        np.testing.assert_allclose(other.H, results[0].H, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(other.W, results[0].W, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("init", ["random", "nndsvda", "nndsvdar", "nndsvd"])
def test_same_seed_same_result(init):
    X = poisson_counts(seed=5)
    a = fit_nmf(X, 4, objective="kl", solver="mu", max_iter=20, init=init, random_state=7)
    b = fit_nmf(X, 4, objective="kl", solver="mu", max_iter=20, init=init, random_state=7)
    np.testing.assert_array_equal(a.H, b.H)
    np.testing.assert_array_equal(a.W, b.W)
    if init in ("random", "nndsvdar"):
        c = fit_nmf(X, 4, objective="kl", solver="mu", max_iter=20, init=init, random_state=8)
        assert not np.allclose(a.H, c.H)


@pytest.mark.parametrize(("objective", "solver"), CONFIGS)
def test_recovers_planted_factors(objective, solver):
    rng = np.random.default_rng(0)
    H_true = rng.random((150, 3)) * (rng.random((150, 3)) < 0.6)
    W_true = rng.random((90, 3)) * (rng.random((90, 3)) < 0.6)
    X = H_true @ W_true.T
    result = fit_nmf(
        X,
        3,
        objective=objective,
        solver=solver,
        max_iter=3000,
        tol=1e-12,
        init="random",
        random_state=0,
    )
    fit = result.H @ result.W.T
    assert np.linalg.norm(fit - X) / np.linalg.norm(X) < 0.02
    # factors match up to permutation and scale: each true column has a near-parallel fitted one
    for r in range(3):
        cosines = [
            result.W[:, s]
            @ W_true[:, r]
            / (np.linalg.norm(result.W[:, s]) * np.linalg.norm(W_true[:, r]) + 1e-300)
            for s in range(3)
        ]
        assert max(cosines) > 0.98


def test_kl_never_forms_dense_ratio_matrix():
    """A 200,000 x 50,000 count matrix with 2M non-zeros fits in a few hundred MB: the dense
    model or ratio matrix alone would need 80 GB, so this only passes if updates stay on the
    stored entries."""
    rng = np.random.default_rng(0)
    n, m, nnz = 200_000, 50_000, 2_000_000
    X = sp.csr_matrix(
        (rng.integers(1, 5, nnz).astype(float), (rng.integers(0, n, nnz), rng.integers(0, m, nnz))),
        shape=(n, m),
    )
    result = fit_nmf(X, 5, objective="kl", solver="mu", max_iter=2, tol=0, init="random")
    assert result.H.shape == (n, 5) and np.isfinite(result.history["loss"]).all()


def test_empty_rows_and_columns_get_zero_factors():
    X = poisson_counts(seed=6).toarray()
    X[3] = 0
    X[:, 7] = 0
    for objective, solver in CONFIGS:
        result = fit_nmf(X, 4, objective=objective, solver=solver, max_iter=20)
        assert result.empty_obs == 1 and result.empty_vars == 1
        assert np.all(result.H[3] == 0) and np.all(result.W[7] == 0)
        assert np.isfinite(result.H).all() and np.isfinite(result.W).all()


def test_tolerance_stops_early_and_callback_schedule():
    X = poisson_counts(seed=8)
    calls = []

    def callback(H, W):
        calls.append(1)
        return {"score": float(H.sum())}

    result = fit_nmf(
        X, 4, objective="kl", solver="mu", max_iter=500, tol=1e-3, callback=callback, track_every=4
    )
    assert result.converged and result.n_iter < 500
    history = result.history
    assert history["iteration"] == list(range(result.n_iter + 1))
    scored = [
        i for i, s in zip(history["iteration"], history["score"], strict=True) if not np.isnan(s)
    ]
    assert scored == sorted({*range(4, result.n_iter + 1, 4), result.n_iter})
    assert len(calls) == len(scored)
    assert np.all(np.diff(history["time"]) >= 0)


def test_randomized_svd_matches_lapack():
    # exact where the spectrum has a gap after rank k (rank-5 signal plus small noise)
    rng = np.random.default_rng(9)
    X = sp.csr_matrix(rng.random((100, 5)) @ rng.random((5, 70)) + 0.01 * rng.random((100, 70)))
    U, S, _Vt = randomized_svd(X, 5, np.random.default_rng(0))
    S_exact = np.linalg.svd(X.toarray(), compute_uv=False)[:5]
    np.testing.assert_allclose(S, S_exact, rtol=1e-6)
    np.testing.assert_allclose(U.T @ U, np.eye(5), atol=1e-10)


def test_nndsvd_initialisation_is_nonnegative_and_informative():
    X = poisson_counts(n=100, m=70, seed=10)
    H, W = initialize(RowColumnData(X), 6, "nndsvd", np.random.default_rng(0))
    assert (H >= 0).all() and (W >= 0).all()
    dense = X.toarray()
    # better than the best constant approximation
    assert np.linalg.norm(dense - H @ W.T) < np.linalg.norm(dense - dense.mean())

"""iNMF numerics: NNLS against scipy, one ANLS iteration against a slow reference, monotone
objectives, the trace-identity objective, online iNMF against batch ANLS on held-out real cells."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import nnls

import scintegrate as si
from scintegrate._core._nnls import nnls_gram
from scintegrate._core.inmf import fit_inmf, hals_update_w_v, inmf_objective, solve_h
from scintegrate._core.online_inmf import fit_online_inmf

LAMBDA = 5.0


@pytest.fixture(scope="module")
def two_datasets(cortex):
    """Real LIGER-preprocessed data: two groups of SNARE-seq libraries as two datasets."""
    adata = cortex[cortex.obs["library"].isin(["09A", "09B", "09C", "09D"])].copy()
    adata.obs["dataset"] = np.where(adata.obs["library"].isin(["09A", "09B"]), "AB", "CD")
    si.pp.liger_preprocess(adata, batch_key="dataset")
    genes = adata.var["liger_highly_variable"].to_numpy()
    X = adata.layers["liger_scaled"][:, genes].tocsr()
    groups = adata.obs["dataset"].to_numpy()
    return [X[groups == name] for name in ("AB", "CD")]


@pytest.fixture(scope="module")
def tiny(two_datasets):
    """60 + 50 cells x 40 genes of the real data (for the slow references)."""
    rng = np.random.default_rng(1)
    X1, X2 = two_datasets
    genes = np.sort(np.argsort(-np.asarray((X1 > 0).sum(0)).ravel())[:40])
    out = []
    for X, n in ((X1, 60), (X2, 50)):
        rows = np.sort(rng.choice(X.shape[0], n, replace=False))
        out.append(X[rows][:, genes].tocsr())
    return out


def dense_objective(Xs, W, Vs, Hs, lam):
    total = 0.0
    for X, V, H in zip(Xs, Vs, Hs, strict=True):
        X = X.toarray() if sp.issparse(X) else X
        total += np.sum((X - H @ (W + V).T) ** 2) + lam * np.sum((H @ V.T) ** 2)
    return total


@pytest.mark.parametrize("k", [1, 4, 20])
def test_nnls_matches_scipy(k):
    rng = np.random.default_rng(k)
    A = rng.random((50, k))
    B = rng.standard_normal((50, 300))
    ours = nnls_gram(A.T @ A, (A.T @ B).T)
    reference = np.array([nnls(A, b)[0] for b in B.T])
    np.testing.assert_allclose(ours, reference, atol=1e-8)
    assert (ours >= 0).all()
    warm = nnls_gram(A.T @ A, (A.T @ B).T, init=rng.random((300, k)))
    np.testing.assert_allclose(warm, reference, atol=1e-8)


def test_nnls_singular_gram_stays_finite():
    rng = np.random.default_rng(0)
    A = rng.random((30, 5))
    A[:, 2] = 0.0  # a factor no data uses
    X = nnls_gram(A.T @ A, (A.T @ rng.random((30, 10))).T)
    assert np.isfinite(X).all()
    assert np.all(X[:, 2] == 0)


def test_h_step_matches_augmented_least_squares(tiny):
    """The Gram form of (11) gives what scipy's NNLS gives on the stacked system."""
    rng = np.random.default_rng(0)
    X = tiny[0]
    m, k = X.shape[1], 6
    W, V = rng.random((m, k)), rng.random((m, k))
    H, value = solve_h(X, W, V, LAMBDA, chunk_size=17)  # several chunks
    stacked = np.vstack([W + V, np.sqrt(LAMBDA) * V])
    dense = X.toarray()
    reference = np.array([nnls(stacked, np.concatenate([x, np.zeros(m)]))[0] for x in dense])
    np.testing.assert_allclose(H, reference, atol=1e-6)
    expected = np.sum((dense - H @ (W + V).T) ** 2) + LAMBDA * np.sum((H @ V.T) ** 2)
    np.testing.assert_allclose(value, expected, rtol=1e-9)


def _slow_anls_iteration(Xs, W, Vs, Hs, lam):
    """One ANLS iteration (H_i, V_i per dataset, then W) with scipy's NNLS, column by column."""
    Xs = [X.toarray() for X in Xs]
    m = W.shape[0]
    Hs, Vs, W = [H.copy() for H in Hs], [V.copy() for V in Vs], W.copy()
    for i, X in enumerate(Xs):
        stacked = np.vstack([W + Vs[i], np.sqrt(lam) * Vs[i]])
        Hs[i] = np.array([nnls(stacked, np.concatenate([x, np.zeros(m)]))[0] for x in X])
        H = Hs[i]
        design = np.vstack([H, np.sqrt(lam) * H])
        n = H.shape[0]
        Vs[i] = np.array(
            [nnls(design, np.concatenate([X[:, g] - H @ W[g], np.zeros(n)]))[0] for g in range(m)]
        )
    design = np.vstack(Hs)
    W = np.array(
        [
            nnls(
                design,
                np.concatenate([X[:, g] - H @ V[g] for X, H, V in zip(Xs, Hs, Vs, strict=True)]),
            )[0]
            for g in range(m)
        ]
    )
    return W, Vs, Hs


def test_anls_matches_slow_reference(tiny):
    k = 5
    result = fit_inmf(tiny, k, solver="anls", max_iter=2, tol=0, rng=np.random.default_rng(3))
    rng = np.random.default_rng(3)  # the same draws as fit_inmf's initialisation
    m = tiny[0].shape[1]
    W = rng.uniform(0, 2, (m, k))
    Vs = [rng.uniform(0, 2, (m, k)) for _ in tiny]
    Hs = [rng.uniform(0, 2, (X.shape[0], k)) for X in tiny]
    for _ in range(2):
        W, Vs, Hs = _slow_anls_iteration(tiny, W, Vs, Hs, LAMBDA)
    np.testing.assert_allclose(result.W, W, atol=1e-6)
    for ours, ref in zip(result.V + result.H, Vs + Hs, strict=True):
        np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_objective_trace_identity(tiny):
    rng = np.random.default_rng(0)
    m, k = tiny[0].shape[1], 4
    W = rng.random((m, k))
    Vs = [rng.random((m, k)) for _ in tiny]
    Hs = [rng.random((X.shape[0], k)) for X in tiny]
    np.testing.assert_allclose(
        inmf_objective(tiny, W, Vs, Hs, LAMBDA),
        dense_objective(tiny, W, Vs, Hs, LAMBDA),
        rtol=1e-10,
    )


@pytest.mark.parametrize("solver", ["anls", "hals", "mu"])
def test_objective_never_increases(two_datasets, solver):
    result = fit_inmf(
        two_datasets, 10, solver=solver, max_iter=15, tol=0, rng=np.random.default_rng(0)
    )
    objective = np.asarray(result.history["objective"])
    assert len(objective) == 16
    assert np.all(np.diff(objective) <= 1e-10 * objective[:-1]), objective
    assert objective[-1] < 0.2 * objective[0]
    assert result.objective == pytest.approx(
        inmf_objective(two_datasets, result.W, result.V, result.H, LAMBDA), rel=1e-9
    )
    for factor in (result.W, *result.V, *result.H):
        assert (factor >= 0).all()


def test_anls_converges_and_stops_on_tol(two_datasets):
    result = fit_inmf(two_datasets, 8, max_iter=200, tol=1e-4, rng=np.random.default_rng(0))
    assert result.converged
    assert result.n_iter < 200
    objective = result.history["objective"]
    assert objective[-2] - objective[-1] <= 1e-4 * objective[-2]


def test_hals_w_v_sweep_is_exact_coordinate_descent(tiny):
    """On the surrogate built from A and B, one sweep never increases it."""
    rng = np.random.default_rng(0)
    m, k = tiny[0].shape[1], 6
    Hs = [rng.random((X.shape[0], k)) for X in tiny]
    As = [H.T @ H for H in Hs]
    Bs = [np.asarray(X.T @ H) for X, H in zip(tiny, Hs, strict=True)]
    W = rng.random((m, k))
    Vs = [rng.random((m, k)) for _ in tiny]
    before = dense_objective(tiny, W, Vs, Hs, LAMBDA)
    for _ in range(3):
        hals_update_w_v(W, Vs, As, Bs, LAMBDA)
        after = dense_objective(tiny, W, Vs, Hs, LAMBDA)
        assert after <= before * (1 + 1e-12)
        before = after


def test_same_seed_same_result(tiny):
    a = fit_online_inmf(tiny, 4, batch_size=40, max_epochs=2, rng=np.random.default_rng(7))
    b = fit_online_inmf(tiny, 4, batch_size=40, max_epochs=2, rng=np.random.default_rng(7))
    c = fit_online_inmf(tiny, 4, batch_size=40, max_epochs=2, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.H[1], b.H[1])
    assert not np.allclose(a.W, c.W)
    d = fit_inmf(tiny, 4, max_iter=3, rng=np.random.default_rng(7))
    e = fit_inmf(tiny, 4, max_iter=3, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(d.H[0], e.H[0])


def test_online_statistics_and_history(tiny):
    result = fit_online_inmf(tiny, 4, batch_size=30, max_epochs=3, rng=np.random.default_rng(0))
    parts = round(110 / 30)
    assert result.n_iter == 3 * parts
    assert result.history["epoch"][-1] == pytest.approx(3.0)
    assert [A.shape for A in result.A] == [(4, 4), (4, 4)]
    assert [B.shape for B in result.B] == [(40, 4), (40, 4)]
    for A in result.A:  # a (weighted) sum of h h^T: symmetric positive semidefinite
        np.testing.assert_allclose(A, A.T, atol=1e-12)
        assert np.linalg.eigvalsh(A).min() > -1e-10
    assert result.objective == pytest.approx(
        inmf_objective(tiny, result.W, result.V, result.H, LAMBDA), rel=1e-9
    )


def test_online_matches_batch_anls_on_held_out_cells(two_datasets):
    """The paper's check: train on 80% of the cells, solve H for the other 20% with the learned
    W and V_i, and compare objective (1) there (online within 2% of batch ANLS)."""
    rng = np.random.default_rng(0)
    train, test = [], []
    for X in two_datasets:
        order = rng.permutation(X.shape[0])
        cut = int(0.8 * X.shape[0])
        train.append(X[np.sort(order[:cut])])
        test.append(X[np.sort(order[cut:])])
    k = 12
    online = fit_online_inmf(train, k, batch_size=500, max_epochs=5, rng=np.random.default_rng(0))
    batch = fit_inmf(train, k, max_iter=30, tol=0, rng=np.random.default_rng(0))

    def held_out(result):
        return sum(solve_h(X, result.W, V, LAMBDA)[1] for X, V in zip(test, result.V, strict=True))

    online_test, batch_test = held_out(online), held_out(batch)
    assert online_test <= 1.02 * batch_test, (online_test, batch_test)
    assert online.objective <= 1.02 * batch.objective

"""UINMF numerics: the H-step against scipy's NNLS on the stacked system, two ANLS iterations
against a slow reference, the trace-identity objective, a non-increasing objective on real data,
sparse == dense, equality with batch iNMF without unshared features, and planted unshared
structure recovered."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment, nnls

import scintegrate as si
from scintegrate._core.inmf import fit_inmf
from scintegrate._core.uinmf import fit_uinmf, solve_h_uinmf, uinmf_objective

LAMBDA = 5.0


@pytest.fixture(autouse=True)
def _one_numba_thread():
    """These inputs are tiny: on a busy machine the parallel kernels' thread pool costs 10-50x
    the work itself, so these tests run the compiled kernels on one thread."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


@pytest.fixture(scope="module")
def mosaic():
    """Real SNARE-seq data as two datasets on disjoint nuclei: RNA (shared genes only) and ATAC
    (gene activity of the same genes + its own peaks), each scaled as LIGER scales (cells divided
    by their total, features by their root-mean-square within the dataset)."""
    rna = si.datasets.snareseq_cortex_rna()
    activity = si.datasets.snareseq_cortex_atac_gene_activity()
    peaks = si.datasets.snareseq_cortex_atac_peaks()
    rng = np.random.default_rng(0)
    order = rng.permutation(rna.n_obs)
    rna_cells, atac_cells = np.sort(order[:700]), np.sort(order[700:1300])
    genes = np.argsort(-np.asarray((rna.X[rna_cells] > 0).sum(0)).ravel())[:150]
    genes = np.sort(genes)
    detected = np.asarray((peaks.X[atac_cells] > 0).sum(0)).ravel()
    own = np.sort(np.argsort(-detected, kind="stable")[:80])

    def scale(*blocks):
        counts = sp.hstack(blocks, format="csr").astype(np.float64)
        totals = np.asarray(counts.sum(1)).ravel()
        normed = sp.diags(1.0 / np.maximum(totals, 1)) @ counts
        rms = np.sqrt(np.asarray(normed.multiply(normed).sum(0)).ravel() / (counts.shape[0] - 1))
        return (normed @ sp.diags(np.where(rms > 0, 1.0 / np.where(rms > 0, rms, 1), 0))).tocsr()

    X1 = scale(rna.X[rna_cells][:, genes])
    atac = scale(activity.X[atac_cells][:, genes], peaks.X[atac_cells][:, own])
    X2, Y2 = atac[:, : len(genes)].tocsr(), atac[:, len(genes) :].tocsr()
    return [X1, X2], [None, Y2]


@pytest.fixture(scope="module")
def tiny(mosaic):
    """40 + 30 cells x 25 shared features, 12 unshared features for the second dataset."""
    (X1, X2), (_, Y2) = mosaic
    rng = np.random.default_rng(1)
    genes = np.sort(np.argsort(-np.asarray((X2 > 0).sum(0)).ravel(), kind="stable")[:25])
    peaks = np.sort(np.argsort(-np.asarray((Y2 > 0).sum(0)).ravel(), kind="stable")[:12])
    r1 = np.sort(rng.choice(X1.shape[0], 40, replace=False))
    r2 = np.sort(rng.choice(X2.shape[0], 30, replace=False))
    return [X1[r1][:, genes], X2[r2][:, genes]], [None, Y2[r2][:, peaks]]


def dense_objective(Xs, Ys, W, Vs, Us, Hs, lam):
    total = 0.0
    for X, Y, V, U, H in zip(Xs, Ys, Vs, Us, Hs, strict=True):
        X = X.toarray() if sp.issparse(X) else X
        total += np.sum((X - H @ (W + V).T) ** 2) + lam * np.sum((H @ V.T) ** 2)
        if Y is not None:
            Y = Y.toarray() if sp.issparse(Y) else Y
            total += np.sum((Y - H @ U.T) ** 2) + lam * np.sum((H @ U.T) ** 2)
    return total


def test_h_step_matches_stacked_least_squares(tiny):
    """The Gram form of the H-step gives what scipy's NNLS gives on the stacked system
    [W + V; sqrt(lambda) V; U; sqrt(lambda) U] h = [x; 0; y; 0]."""
    (_, X), (_, Y) = tiny
    rng = np.random.default_rng(0)
    m, u, k = X.shape[1], Y.shape[1], 6
    W, V, U = rng.random((m, k)), rng.random((m, k)), rng.random((u, k))
    H, value = solve_h_uinmf(X, Y, W, V, U, LAMBDA, chunk_size=7)  # several chunks
    s = np.sqrt(LAMBDA)
    stacked = np.vstack([W + V, s * V, U, s * U])
    Xd, Yd = X.toarray(), Y.toarray()
    reference = np.array(
        [
            nnls(stacked, np.concatenate([x, np.zeros(m), y, np.zeros(u)]))[0]
            for x, y in zip(Xd, Yd, strict=True)
        ]
    )
    np.testing.assert_allclose(H, reference, atol=1e-9)
    expected = dense_objective([Xd], [Yd], W, [V], [U], [H], LAMBDA)
    np.testing.assert_allclose(value, expected, rtol=1e-9)


def _slow_iteration(Xs, Ys, W, Vs, Us, Hs, lam):
    """One ANLS iteration with scipy's NNLS on the stacked systems: every H_i, V_i, U_i, then W."""
    Xs = [X.toarray() for X in Xs]
    Ys = [None if Y is None else Y.toarray() for Y in Ys]
    W, Vs, Us, Hs = W.copy(), [V.copy() for V in Vs], [U.copy() for U in Us], [H.copy() for H in Hs]
    m, s = W.shape[0], np.sqrt(lam)
    for i, (X, Y) in enumerate(zip(Xs, Ys, strict=True)):
        u = 0 if Y is None else Y.shape[1]
        stacked = np.vstack([W + Vs[i], s * Vs[i], Us[i], s * Us[i]])
        rows = [
            np.concatenate([x, np.zeros(m), np.zeros(0) if Y is None else Y[c], np.zeros(u)])
            for c, x in enumerate(X)
        ]
        Hs[i] = np.array([nnls(stacked, b)[0] for b in rows])
        H = Hs[i]
        design = np.vstack([H, s * H])
        zeros = np.zeros(H.shape[0])
        Vs[i] = np.array(
            [nnls(design, np.concatenate([X[:, g] - H @ W[g], zeros]))[0] for g in range(m)]
        )
        if u:
            Us[i] = np.array([nnls(design, np.concatenate([Y[:, f], zeros]))[0] for f in range(u)])
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
    return W, Vs, Us, Hs


def test_anls_matches_slow_reference(tiny):
    Xs, Ys = tiny
    k = 4
    result = fit_uinmf(Xs, Ys, k, max_iter=2, tol=0, rng=np.random.default_rng(3))
    rng = np.random.default_rng(3)  # the documented start: W, every V_i, every H_i, every U_i
    m = Xs[0].shape[1]
    W = rng.uniform(0, 2, (m, k))
    Vs = [rng.uniform(0, 2, (m, k)) for _ in Xs]
    Hs = [rng.uniform(0, 2, (X.shape[0], k)) for X in Xs]
    Us = [np.zeros((0, k)) if Y is None else rng.uniform(0, 2, (Y.shape[1], k)) for Y in Ys]
    objectives = [dense_objective(Xs, Ys, W, Vs, Us, Hs, LAMBDA)]
    for _ in range(2):
        W, Vs, Us, Hs = _slow_iteration(Xs, Ys, W, Vs, Us, Hs, LAMBDA)
        objectives.append(dense_objective(Xs, Ys, W, Vs, Us, Hs, LAMBDA))
    np.testing.assert_allclose(result.W, W, atol=1e-8)
    for ours, ref in zip(result.V + result.U + result.H, Vs + Us + Hs, strict=True):
        np.testing.assert_allclose(ours, ref, atol=1e-8)
    np.testing.assert_allclose(result.history["objective"], objectives, rtol=1e-10)


def test_objective_trace_identity(tiny):
    Xs, Ys = tiny
    rng = np.random.default_rng(0)
    m, k = Xs[0].shape[1], 4
    W = rng.random((m, k))
    Vs = [rng.random((m, k)) for _ in Xs]
    Us = [np.zeros((0, k)) if Y is None else rng.random((Y.shape[1], k)) for Y in Ys]
    Hs = [rng.random((X.shape[0], k)) for X in Xs]
    np.testing.assert_allclose(
        uinmf_objective(Xs, Ys, W, Vs, Us, Hs, LAMBDA),
        dense_objective(Xs, Ys, W, Vs, Us, Hs, LAMBDA),
        rtol=1e-10,
    )


@pytest.mark.parametrize("init", ["uniform", "cells"])
def test_objective_never_increases(mosaic, init):
    Xs, Ys = mosaic
    result = fit_uinmf(Xs, Ys, 8, max_iter=12, tol=0, init=init, rng=np.random.default_rng(0))
    objective = np.asarray(result.history["objective"])
    assert len(objective) == 13
    assert np.all(np.diff(objective) <= 1e-10 * objective[:-1]), objective
    assert objective[-1] < 0.5 * objective[0]
    assert result.objective == pytest.approx(
        uinmf_objective(Xs, Ys, result.W, result.V, result.U, result.H, LAMBDA), rel=1e-9
    )
    for factor in (result.W, *result.V, *result.U, *result.H):
        assert (factor >= 0).all()
    assert result.U[0].shape == (0, 8) and result.U[1].shape == (Ys[1].shape[1], 8)


def test_stops_on_tol(mosaic):
    Xs, Ys = mosaic
    result = fit_uinmf(Xs, Ys, 5, max_iter=200, tol=1e-3, rng=np.random.default_rng(0))
    assert result.converged and result.n_iter < 200
    objective = result.history["objective"]
    assert objective[-2] - objective[-1] <= 1e-3 * objective[-2]


def test_sparse_equals_dense(tiny):
    Xs, Ys = tiny
    sparse = fit_uinmf(Xs, Ys, 4, max_iter=5, tol=0, rng=np.random.default_rng(0))
    dense = fit_uinmf(
        [X.toarray() for X in Xs],
        [None, Ys[1].toarray()],
        4,
        max_iter=5,
        tol=0,
        rng=np.random.default_rng(0),
    )
    for a, b in zip(sparse.H + sparse.U + [sparse.W], dense.H + dense.U + [dense.W], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    csc = fit_uinmf(
        [sp.csc_array(X) for X in Xs],
        [None, sp.csc_matrix(Ys[1])],
        4,
        max_iter=5,
        tol=0,
        rng=np.random.default_rng(0),
    )
    np.testing.assert_allclose(csc.H[1], sparse.H[1], rtol=1e-12, atol=1e-12)


def test_without_unshared_features_equals_batch_inmf(mosaic):
    """Same start (the documented draws), same block order, same solver: the same iterates."""
    Xs, _ = mosaic
    ours = fit_uinmf(Xs, [None, None], 6, max_iter=5, tol=0, rng=np.random.default_rng(2))
    inmf = fit_inmf(Xs, 6, solver="anls", max_iter=5, tol=0, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(ours.W, inmf.W)
    for a, b in zip(ours.V + ours.H, inmf.V + inmf.H, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ours.history["objective"], inmf.history["objective"])
    # an empty unshared block is the same as none
    empty = sp.csr_matrix((Xs[1].shape[0], 0))
    again = fit_uinmf(Xs, [None, empty], 6, max_iter=5, tol=0, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(again.H[1], ours.H[1])


def test_same_seed_same_result(tiny):
    Xs, Ys = tiny
    a = fit_uinmf(Xs, Ys, 4, max_iter=3, rng=np.random.default_rng(7))
    b = fit_uinmf(Xs, Ys, 4, max_iter=3, rng=np.random.default_rng(7))
    c = fit_uinmf(Xs, Ys, 4, max_iter=3, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a.U[1], b.U[1])
    np.testing.assert_array_equal(a.H[0], b.H[0])
    assert not np.allclose(a.H[0], c.H[0])


def _planted(seed: int):
    """Three cell types. Dataset 1 shows them cleanly in the shared features; dataset 2 only
    faintly there (80% of the values dropped, heavy noise: like sparse gene activity), but
    cleanly in 15 features of its own (5 per type)."""
    rng = np.random.default_rng(seed)
    k, m, u = 3, 30, 15
    W = np.kron(np.eye(k), np.ones((10, 1)))  # 10 marker features per type
    U = np.kron(np.eye(k), np.ones((5, 1)))
    types = np.repeat(np.arange(k), 20)

    def cells():
        H = np.zeros((len(types), k))
        H[np.arange(len(types)), types] = rng.uniform(0.5, 1.5, len(types))
        return H

    H1, H2 = cells(), cells()
    X1 = H1 @ W.T + rng.exponential(0.05, (len(types), m))
    X2 = (H2 @ W.T + rng.exponential(0.5, (len(types), m))) * (rng.random((len(types), m)) < 0.2)
    Y2 = H2 @ U.T + rng.exponential(0.05, (len(types), u))
    return [X1, X2], Y2, U, types


def _type_accuracy(H1, H2, types):
    """Label each factor by the majority type of the dataset-1 cells it dominates; the fraction
    of dataset-2 cells whose dominant factor carries their own type (cross-dataset agreement)."""
    top1, top2 = H1.argmax(1), H2.argmax(1)
    label = {f: np.bincount(types[top1 == f]).argmax() for f in np.unique(top1)}
    return float(np.mean([label.get(f, -1) == t for f, t in zip(top2, types, strict=True)]))


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_unshared_structure_is_recovered(seed):
    Xs, Y2, U_true, types = _planted(seed)
    ours = fit_uinmf(Xs, [None, Y2], 3, max_iter=50, tol=0, rng=np.random.default_rng(0))
    inmf = fit_inmf(Xs, 3, max_iter=50, tol=0, rng=np.random.default_rng(0))
    # the unshared loadings are the planted programmes (up to order and scale)
    corr = np.corrcoef(np.hstack([ours.U[1], U_true]).T)[:3, 3:]
    rows, cols = linear_sum_assignment(-corr)
    assert corr[rows, cols].min() > 0.99
    # the unshared features place dataset 2's cells with their type in dataset 1's factors
    with_unshared = _type_accuracy(ours.H[0], ours.H[1], types)
    shared_only = _type_accuracy(inmf.H[0], inmf.H[1], types)
    assert with_unshared >= 0.85
    assert with_unshared >= shared_only + 0.15, (with_unshared, shared_only)


def test_bad_core_arguments(tiny):
    Xs, Ys = tiny
    with pytest.raises(ValueError, match="init='random' is not supported"):
        fit_uinmf(Xs, Ys, 3, init="random", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="2 shared blocks but 1 unshared"):
        fit_uinmf(Xs, Ys[:1], 3, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="the same cells"):
        fit_uinmf(Xs, [None, Ys[1][:5]], 3, rng=np.random.default_rng(0))

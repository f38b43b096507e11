"""The MMD-MA numerics: kernel sums without n x m matrices, the objective, gradients, the fit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scintegrate._core import mmdma as M
from scintegrate._core.mmdma._kernels import _lower_median
from scintegrate._core.mmdma._modality import _Modality
from scintegrate._core.mmdma._rotation_search import (
    _cross_kernel_mean,
    _distinct_first,
    _haar_orthogonal,
    rotation_search,
)
from scintegrate._core.mmdma._symmetry import _sym_power, _symmetry_search


def _dense_objective(X, Y, Wx, Wy, bandwidth, lp, ld, *, unbiased=False):
    """The objective written out with every n x n matrix (the slow reference)."""
    Zx, Zy = X @ Wx, Y @ Wy
    mmd = M.mmd2_dense(Zx, Zy, bandwidth, unbiased=unbiased)
    eye = torch.eye(Wx.shape[1], dtype=X.dtype)
    pen = torch.linalg.matrix_norm(Wx.T @ Wx - eye) + torch.linalg.matrix_norm(Wy.T @ Wy - eye)
    dis = 0
    for A, Z in ((X, Zx), (Y, Zy)):
        K = A @ A.T
        dis = dis + torch.linalg.matrix_norm(K - Z @ Z.T) / torch.linalg.matrix_norm(K)
    return mmd + lp * pen + ld * dis


@pytest.mark.parametrize("unbiased", [False, True])
def test_blockwise_mmd_matches_dense_value_and_gradient(unbiased):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(130, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(97, 4, generator=gen, dtype=torch.float64, requires_grad=True) + 0.5
    # blocks of 32 rows: several full and ragged blocks in both directions
    value = M.mmd2(a, b, 1.3, unbiased=unbiased, block_size=32)
    grads = torch.autograd.grad(value, [a, b])
    ref = M.mmd2_dense(a, b, 1.3, unbiased=unbiased)
    ref_grads = torch.autograd.grad(ref, [a, b])
    assert float(value.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-14)


def test_blockwise_mmd_float32_close_to_float64():
    rng = np.random.default_rng(1)
    a64 = torch.tensor(rng.normal(size=(300, 6)), requires_grad=True)
    b64 = torch.tensor(rng.normal(size=(200, 6)) + 0.3, requires_grad=True)
    a32 = a64.detach().float().requires_grad_()
    b32 = b64.detach().float().requires_grad_()
    v64 = M.mmd2(a64, b64, 2.0)
    v32 = M.mmd2(a32, b32, 2.0, block_size=64)
    g64 = torch.autograd.grad(v64, [a64])[0]
    g32 = torch.autograd.grad(v32, [a32])[0]
    assert float(v32.detach()) == pytest.approx(float(v64.detach()), rel=1e-4)
    torch.testing.assert_close(g32.double(), g64, rtol=1e-3, atol=1e-7)


def test_objective_matches_dense_reference_and_gradient_finite_differences():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(25, 8))
    Y = rng.normal(size=(20, 6)) * 2
    Wx = rng.normal(size=(8, 3)) * 0.3
    Wy = rng.normal(size=(6, 3)) * 0.3
    terms = M.objective(X, Y, [Wx, Wy], bandwidth=1.5, lambda_penalty=0.7, lambda_distortion=0.4)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    ref = _dense_objective(Xt, Yt, torch.tensor(Wx), torch.tensor(Wy), 1.5, 0.7, 0.4)
    assert terms["loss"] == pytest.approx(float(ref), rel=1e-9)

    # the gradient our code computes (blockwise MMD, gram-route distortion) vs finite differences
    mods = [_Modality(A, "primal", torch.float64, "cpu") for A in (X, Y)]

    def loss(wx, wy):
        zs = [m.embed(w) for m, w in zip(mods, (wx, wy), strict=True)]
        mmd = M.mmd2(zs[0], zs[1], 1.5, block_size=8)
        pen = sum(m.penalty(w, z) for m, w, z in zip(mods, (wx, wy), zs, strict=True))
        dis = sum(m.distortion(w, z) for m, w, z in zip(mods, (wx, wy), zs, strict=True))
        return mmd + 0.7 * pen + 0.4 * dis

    params = (
        torch.tensor(Wx, requires_grad=True),
        torch.tensor(Wy, requires_grad=True),
    )
    assert torch.autograd.gradcheck(loss, params, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_distortion_routes_agree_with_dense_and_sparse_input():
    rng = np.random.default_rng(3)
    X = sp.random(60, 300, density=0.05, random_state=4, format="csr")  # p > n: "cells" route
    Y = rng.normal(size=(50, 7))  # "gram" route
    Wx = rng.normal(size=(300, 2))
    Wy = rng.normal(size=(7, 2))
    routes = [_Modality(A, "primal", torch.float64, "cpu").route for A in (X, Y)]
    assert routes == ["cells", "gram"]
    sparse_terms = M.objective(X, Y, [Wx, Wy], bandwidth=1.0)
    dense_terms = M.objective(X.toarray(), Y, [Wx, Wy], bandwidth=1.0)
    ref = _dense_objective(
        torch.tensor(X.toarray()), torch.tensor(Y), torch.tensor(Wx), torch.tensor(Wy), 1.0, 1, 1
    )
    assert sparse_terms == pytest.approx(dense_terms, rel=1e-10)
    assert sparse_terms["loss"] == pytest.approx(float(ref), rel=1e-9)


@pytest.mark.parametrize("n_features", [12, 300], ids=["gram", "cells"])
@pytest.mark.parametrize("formulation", ["primal", "dual"])
def test_modality_reads_sparse_input_from_a_private_canonical_copy(n_features, formulation):
    """Unsorted indices and a duplicate entry: the caller's arrays stay as they were (issue 18)
    and the modality is that of the canonical matrix."""
    clean = sp.random(40, n_features, density=0.2, random_state=7, format="csr", dtype=np.float32)
    n = clean.indptr[1]
    assert n >= 2
    indices, data = clean.indices.copy(), clean.data.copy()
    indices[:n], data[:n] = indices[n - 1 :: -1].copy(), data[n - 1 :: -1].copy()
    half = data[:1] / 2
    indptr = clean.indptr.copy()
    indptr[1:] += 1
    messy = sp.csr_matrix(
        (np.concatenate([half, half, data[1:]]), np.concatenate([indices[:1], indices]), indptr),
        shape=clean.shape,
    )
    before = [a.copy() for a in (messy.data, messy.indices, messy.indptr)]
    got = _Modality(messy, formulation, torch.float64, "cpu")
    ref = _Modality(clean, formulation, torch.float64, "cpu")
    for now, then in zip((messy.data, messy.indices, messy.indptr), before, strict=True):
        np.testing.assert_array_equal(now, then, strict=True)
    expected = "dual" if formulation == "dual" else ("cells" if n_features > 12 else "gram")
    assert got.route == ref.route == expected
    assert got.gram_sq == ref.gram_sq
    rows = got.n if formulation == "dual" else n_features
    w = torch.from_numpy(np.random.default_rng(0).normal(size=(rows, 2)))
    torch.testing.assert_close(got.embed(w), ref.embed(w), rtol=0, atol=0)
    if formulation == "primal":
        assert got.X_host is not messy and got.X_host.has_canonical_format


def test_primal_and_dual_give_the_same_loss_for_matching_parameters():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 40))
    Y = rng.normal(size=(25, 12))
    alphas = [rng.normal(size=(30, 3)) * 0.01, rng.normal(size=(25, 3)) * 0.01]
    W = [X.T @ alphas[0], Y.T @ alphas[1]]  # Z = X W = X X^T alpha
    primal = M.objective(X, Y, W, bandwidth=0.8, lambda_penalty=0.3, lambda_distortion=2.0)
    dual = M.objective(
        X, Y, alphas, formulation="dual", bandwidth=0.8, lambda_penalty=0.3, lambda_distortion=2.0
    )
    assert primal == pytest.approx(dual, rel=1e-9)


def test_fit_is_seeded_and_decreases_the_objective():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(80, 15))
    Y = rng.normal(size=(70, 12))
    kw = {"max_epochs": 60, "bandwidth": 2.0}
    a = M.fit_mmdma(X, Y, 3, rng=np.random.default_rng(0), **kw)
    b = M.fit_mmdma(X, Y, 3, rng=np.random.default_rng(0), **kw)
    c = M.fit_mmdma(X, Y, 3, rng=np.random.default_rng(1), **kw)
    np.testing.assert_array_equal(a.embeddings[0], b.embeddings[0])
    assert a.history["loss"] == b.history["loss"]
    assert not np.allclose(a.embeddings[0], c.embeddings[0])
    assert a.history["loss"][-1] < a.history["loss"][0]


def test_restarts_keep_the_lowest_loss_and_minibatch_runs():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 10))
    Y = rng.normal(size=(50, 10))
    kw = {"max_epochs": 20, "n_restarts": 3}
    res = M.fit_mmdma(X, Y, 2, select="loss", rng=np.random.default_rng(0), **kw)
    assert len(res.restart_losses) == 3
    assert res.loss == min(res.restart_losses)
    assert res.restart_losses[res.best_restart] == res.loss
    res = M.fit_mmdma(X, Y, 2, select="narrow_mmd", rng=np.random.default_rng(0), **kw)
    assert res.restart_scores[res.best_restart] == min(res.restart_scores)
    assert res.loss == res.restart_losses[res.best_restart]
    mini = M.fit_mmdma(X, Y, 2, max_epochs=5, batch_size=16, rng=np.random.default_rng(0))
    assert len(mini.history["loss"]) == 5 and np.isfinite(mini.loss)


def _asymmetric_cloud(rng, n=600):
    """A 2-D cloud without symmetries (an off-centre cluster, a tilted tail), in 4-D."""
    latent = rng.normal(size=(n, 2)) * np.array([1.0, 0.6])
    latent[: n // 4] = rng.normal(size=(n // 4, 2)) * 0.3 + np.array([1.5, 1.0])
    latent[n // 4 : n // 2, 0] = np.linspace(-2.5, 0.0, n // 4)
    latent[n // 4 : n // 2, 1] = -0.8 + 0.3 * latent[n // 4 : n // 2, 0]
    embed = rng.normal(size=(2, 4))
    return latent, embed


def _whitened_foscttm(zx: torch.Tensor, zy: torch.Tensor) -> float:
    """FOSCTTM of the two views, each centred and whitened in the pooled leading 2-D plane."""
    from scintegrate.metrics import foscttm

    zx, zy = zx - zx.mean(0), zy - zy.mean(0)
    basis = torch.linalg.eigh(torch.cat([zx, zy]).T @ torch.cat([zx, zy]))[1][:, -2:]
    ux, uy = zx @ basis, zy @ basis
    return foscttm((ux @ _sym_power(ux, -0.5)).numpy(), (uy @ _sym_power(uy, -0.5)).numpy())


def test_symmetry_search_undoes_a_mirror_image_of_another_scale():
    rng = np.random.default_rng(11)
    latent, embed = _asymmetric_cloud(rng)
    zx = torch.tensor(latent @ embed)
    # the second view: the same cells mirrored through a line at 50 degrees (not a principal
    # axis) and stretched unlike the first, in the same plane of the embedding space
    t = np.deg2rad(50)
    u = np.array([[np.cos(t)], [np.sin(t)]])
    mirror = np.eye(2) - 2 * u @ u.T
    stretch = np.diag([1.4, 0.8])
    zy = torch.tensor(latent @ mirror @ stretch @ embed) + 0.01 * torch.randn(600, 4)
    assert _whitened_foscttm(zx, zy) > 0.2
    T = _symmetry_search(zx, zy)
    assert T is not None
    # with the scales equalised, each cell of the corrected view lies on its partner
    assert _whitened_foscttm(zx, zy @ T) < 0.01


def test_symmetry_search_leaves_an_alignment_without_evidence_alone():
    rng = np.random.default_rng(12)
    latent, embed = _asymmetric_cloud(rng)
    zx = torch.tensor(latent @ embed)
    # the right alignment: nothing to undo
    assert _symmetry_search(zx, zx + 0.01 * torch.randn(600, 4)) is None
    # two unrelated samples of one isotropic distribution: every rotation fits about as well
    a = torch.tensor(rng.normal(size=(500, 3)))
    b = torch.tensor(rng.normal(size=(500, 3)))
    assert _symmetry_search(a, b) is None
    assert _symmetry_search(a[:, :1], b[:, :1]) is None  # one dimension: nothing to search


def test_fit_records_the_symmetry_search():
    rng = np.random.default_rng(13)
    X, Y = rng.normal(size=(60, 8)), rng.normal(size=(50, 8))
    res = M.fit_mmdma(X, Y, 2, max_epochs=10, n_restarts=2, rng=np.random.default_rng(0))
    assert len(res.restart_symmetry) == 2
    off = M.fit_mmdma(X, Y, 2, max_epochs=10, symmetry_search=False, rng=np.random.default_rng(0))
    assert off.restart_symmetry == [False]


def test_dual_fit_runs():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(40, 60))
    Y = rng.normal(size=(30, 50))
    res = M.fit_mmdma(
        X, Y, 3, formulation="dual", init="random", max_epochs=30, rng=np.random.default_rng(0)
    )
    assert res.weights[0].shape == (40, 3)
    assert res.embeddings[1].shape == (30, 3)
    assert res.history["loss"][-1] < res.history["loss"][0]


@pytest.mark.slow
def test_keops_matches_torch_loss_and_gradient():
    pytest.importorskip("pykeops")
    rng = np.random.default_rng(9)
    a = torch.tensor(rng.normal(size=(500, 5)), requires_grad=True)
    b = torch.tensor(rng.normal(size=(400, 5)) + 0.2, requires_grad=True)
    v_t = M.mmd2(a, b, 1.7, backend="torch", block_size=128)
    g_t = torch.autograd.grad(v_t, [a, b])
    v_k = M.mmd2(a, b, 1.7, backend="keops")
    g_k = torch.autograd.grad(v_k, [a, b])
    assert float(v_k.detach()) == pytest.approx(float(v_t.detach()), rel=1e-9, abs=1e-12)
    for gk, gt in zip(g_k, g_t, strict=True):
        torch.testing.assert_close(gk, gt, rtol=1e-8, atol=1e-12)


@pytest.mark.gpu
def test_fit_on_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(10)
    X = rng.normal(size=(200, 20))
    Y = rng.normal(size=(150, 15))
    kw = {"max_epochs": 30, "bandwidth": 2.0, "dtype": torch.float64}
    cpu = M.fit_mmdma(X, Y, 3, rng=np.random.default_rng(0), device="cpu", **kw)
    gpu = M.fit_mmdma(X, Y, 3, rng=np.random.default_rng(0), device="cuda", **kw)
    np.testing.assert_allclose(gpu.embeddings[0], cpu.embeddings[0], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("n", [1, 2, 5, 1000, 20_001])
def test_median_with_a_hint_is_exact(n):
    rng = np.random.default_rng(n)
    values = rng.random(n).astype(np.float32)
    k = (n - 1) // 2
    exact = float(np.partition(values, k)[k])
    assert exact == float(torch.from_numpy(values).median())  # torch's lower median
    for hint in (None, exact, 1.01 * exact, 0.99 * exact, 1.5 * exact, 0.5 * exact, 0.0):
        assert _lower_median(values, hint) == exact


def test_median_bandwidth_matches_pairwise_distances():
    z = torch.randn(300, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    iu = torch.triu_indices(300, 300, offset=1)
    expected = float(torch.cdist(z, z)[iu[0], iu[1]].median())
    state = {}
    assert M.median_bandwidth(z, state) == pytest.approx(expected, rel=1e-9)
    assert M.median_bandwidth(z * 1.001, state) == pytest.approx(1.001 * expected, rel=1e-9)


def test_keep_restart_embeddings_returns_every_restart_and_the_kept_one_among_them():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 10))
    Y = rng.normal(size=(50, 10))
    kw = {"max_epochs": 15, "n_restarts": 3}
    res = M.fit_mmdma(X, Y, 2, keep_restart_embeddings=True, rng=np.random.default_rng(0), **kw)
    plain = M.fit_mmdma(X, Y, 2, rng=np.random.default_rng(0), **kw)
    assert len(res.restart_embeddings) == 3 and plain.restart_embeddings == []
    np.testing.assert_array_equal(res.embeddings[0], plain.embeddings[0])
    np.testing.assert_array_equal(res.embeddings[0], res.restart_embeddings[res.best_restart][0])
    np.testing.assert_array_equal(res.embeddings[1], res.restart_embeddings[res.best_restart][1])


def test_cross_kernel_sums_of_the_rotation_search_match_the_dense_kernel():
    g = torch.Generator().manual_seed(0)
    zx, zy = torch.randn(30, 3, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64)
    R = _haar_orthogonal(4, 3, g)
    wx, wy = torch.rand(30, dtype=torch.float64), torch.rand(20, dtype=torch.float64)
    for r, mean, weighted in zip(
        R,
        _cross_kernel_mean(zx, zy, R, 0.7),
        _cross_kernel_mean(zx, zy, R, 0.7, wx, wy),
        strict=True,
    ):
        K = torch.exp(-torch.cdist(zx, zy @ r).pow(2) / (2 * 0.7**2))
        assert float(mean) == pytest.approx(float(K.mean()), rel=1e-12)
        assert float(weighted) == pytest.approx(float(wx @ K @ wy), rel=1e-12)
    assert torch.allclose(R[0].T @ R[0], torch.eye(3, dtype=torch.float64), atol=1e-12)


def test_rotation_search_finds_the_orthogonal_map_between_two_views_of_other_scales():
    rng = np.random.default_rng(21)
    latent = rng.normal(size=(200, 3)) * np.array([1.0, 0.7, 0.5])
    latent[:50] = rng.normal(size=(50, 3)) * 0.3 + np.array([1.5, 1.0, -0.5])
    latent[50:90] = rng.normal(size=(40, 3)) * 0.2 + np.array([-1.0, 0.5, 1.0])
    Q = _haar_orthogonal(1, 3, torch.Generator().manual_seed(5))[0]
    Q[:, 0] = -Q[:, 0]  # a reflection: the search covers both components of O(3)
    zx = torch.tensor(latent)
    # the second view: other cells' order, another scale, turned by Q^T, so that zy Q = 3 zx
    zy = 3.0 * torch.tensor(latent[rng.permutation(200)]) @ Q.T
    search = {"n_keep": 2, "n_starts": 16, "refine_steps": 150}
    R, mmd = rotation_search(zx, zy, torch.Generator().manual_seed(0), **search)
    assert R.shape == (2, 3, 3) and mmd[0] <= mmd[1]
    assert torch.allclose(R[0], Q, atol=0.02)
    assert float(mmd[0]) < 1e-6
    # seeded: the same generator state gives the same rotations
    again, _ = rotation_search(zx, zy, torch.Generator().manual_seed(0), **search)
    assert torch.equal(R, again)


def test_searched_rotations_put_copies_of_a_better_one_last():
    R = _haar_orthogonal(3, 3, torch.Generator().manual_seed(1))
    R = torch.stack([R[0], R[0] + 1e-4, R[1], R[2], R[1] - 1e-4])  # 1 and 4: copies of 0 and 2
    order = _distinct_first(R, torch.arange(5))
    assert order.tolist() == [0, 2, 3, 1, 4]


def test_fit_from_the_rotation_search_starts_each_restart_at_its_rotation():
    rng = np.random.default_rng(22)
    X, Y = rng.normal(size=(80, 6)), rng.normal(size=(70, 5))
    # a step of lr ~ 0: every restart's embeddings are its start
    res = M.fit_mmdma(X, Y, 2, max_epochs=1, lr=1e-12, n_restarts=3, init="rotation_search",
                      symmetry_search=False, dtype=torch.float64, rng=np.random.default_rng(0),
                      keep_restart_embeddings=True)  # fmt: skip
    assert len(res.restart_start_mmd) == 3
    assert res.restart_start_mmd == sorted(res.restart_start_mmd)
    starts = res.restart_embeddings
    for zx, zy in starts:
        # the principal embedding of each side, scaled to unit mean squared norm
        assert np.mean((zx**2).sum(1)) == pytest.approx(1.0, rel=1e-6)
        assert np.mean((zy**2).sum(1)) == pytest.approx(1.0, rel=1e-6)
        np.testing.assert_allclose(zx, starts[0][0], atol=1e-9)  # the first side is not turned
    # the second side of each restart is the first restart's turned by an orthogonal map
    for _, zy in starts[1:]:
        T, *_ = np.linalg.lstsq(starts[0][1], zy, rcond=None)
        np.testing.assert_allclose(starts[0][1] @ T, zy, atol=1e-6)
        np.testing.assert_allclose(T.T @ T, np.eye(2), atol=1e-6)
    plain = M.fit_mmdma(X, Y, 2, max_epochs=3, rng=np.random.default_rng(0))
    assert plain.restart_start_mmd == []

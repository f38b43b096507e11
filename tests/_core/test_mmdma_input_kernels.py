"""The dual MMD-MA with input kernels: kernel matrices, Nyström features, the kernelised
penalty and distortion (value and gradient), the fit with a given kernel."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.spatial.distance import pdist, squareform

from scintegrate._core import mmdma as M
from scintegrate._core.mmdma import _input_kernels as IK
from scintegrate._core.mmdma._modality import _Modality


def _rbf(X, s):
    return np.exp(-squareform(pdist(X, "sqeuclidean")) / (2 * s**2))


def test_rbf_kernel_median_and_centring_match_the_definitions():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(70, 6))
    s = 1.7
    K = IK.kernel_matrix(X, "rbf", s, block=16)  # several row blocks
    assert K.dtype == np.float32
    np.testing.assert_allclose(K, _rbf(X, s), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(IK.kernel_matrix(sp.csr_matrix(X), "rbf", s), K, atol=1e-6)
    np.testing.assert_allclose(IK.kernel_matrix(X, "linear"), X @ X.T, rtol=1e-5, atol=1e-4)
    assert IK.median_distance(X) == pytest.approx(np.median(pdist(X)), rel=1e-9)
    H = np.eye(70) - 1 / 70
    np.testing.assert_allclose(
        IK.center_kernel(K.astype(np.float64)), H @ _rbf(X, s) @ H, atol=1e-6
    )


def test_nystrom_with_every_cell_as_landmark_is_the_kernel():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 4))
    phi = IK.nystrom_features(X, "rbf", 2.0, 60, np.random.default_rng(0))
    np.testing.assert_allclose(phi @ phi.T, _rbf(X, 2.0), atol=1e-5)
    # fewer landmarks: an approximation of the kernel, close on smooth data
    phi = IK.nystrom_features(X, "rbf", 4.0, 30, np.random.default_rng(0))
    assert phi.shape[0] == 60 and phi.shape[1] <= 30
    err = np.linalg.norm(phi @ phi.T - _rbf(X, 4.0)) / np.linalg.norm(_rbf(X, 4.0))
    assert err < 0.05


def _dense_dual_objective(Kx, Ky, ax, ay, bandwidth, lp, ld):
    """The kernelised objective with every matrix written out (the slow reference)."""
    Zx, Zy = Kx @ ax, Ky @ ay
    mmd = M.mmd2_dense(Zx, Zy, bandwidth)
    eye = torch.eye(ax.shape[1], dtype=Kx.dtype)
    pen = torch.linalg.matrix_norm(ax.T @ Kx @ ax - eye) + torch.linalg.matrix_norm(
        ay.T @ Ky @ ay - eye
    )
    dis = sum(
        torch.linalg.matrix_norm(K - Z @ Z.T) / torch.linalg.matrix_norm(K)
        for K, Z in ((Kx, Zx), (Ky, Zy))
    )
    return mmd + lp * pen + ld * dis


def test_kernelised_objective_and_gradient_match_reference_and_finite_differences():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(30, 5)), rng.normal(size=(24, 7))
    Kx = IK.center_kernel(IK.kernel_matrix(X, "rbf", 2.0).astype(np.float64))
    Ky = IK.center_kernel(IK.kernel_matrix(Y, "rbf", 3.0).astype(np.float64))
    mods = [_Modality(A, "dual", torch.float64, "cpu", kernel=K) for A, K in ((X, Kx), (Y, Ky))]
    alphas = [
        torch.tensor(rng.normal(size=(30, 3)) * 0.3, requires_grad=True),
        torch.tensor(rng.normal(size=(24, 3)) * 0.3, requires_grad=True),
    ]

    def loss(a):
        Z = [m.embed(w) for m, w in zip(mods, a, strict=True)]
        mmd = M.mmd2(Z[0], Z[1], 1.1)
        pen = sum(m.penalty(w, z) for m, w, z in zip(mods, a, Z, strict=True))
        dis = sum(m.distortion(w, z) for m, w, z in zip(mods, a, Z, strict=True))
        return mmd + 0.3 * pen + 2.0 * dis

    value = loss(alphas)
    grads = torch.autograd.grad(value, alphas)
    K = [torch.tensor(Kx), torch.tensor(Ky)]
    a_ref = [a.detach().clone().requires_grad_(True) for a in alphas]
    ref = _dense_dual_objective(K[0], K[1], a_ref[0], a_ref[1], 1.1, 0.3, 2.0)
    assert float(value) == pytest.approx(float(ref), rel=1e-10)
    for g, r in zip(grads, torch.autograd.grad(ref, a_ref), strict=True):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-12)
    # central finite differences on a few entries of each alpha
    eps = 1e-6
    with torch.no_grad():
        for k in range(len(alphas)):
            for i, j in ((0, 0), (5, 2), (17, 1)):
                up = [b.detach().clone() for b in alphas]
                down = [b.detach().clone() for b in alphas]
                up[k][i, j] += eps
                down[k][i, j] -= eps
                fd = (float(loss(up)) - float(loss(down))) / (2 * eps)
                assert float(grads[k][i, j]) == pytest.approx(fd, rel=1e-5, abs=1e-8)
    # the public objective() with the kernels gives the same value
    got = M.objective(
        X, Y, [a.detach().numpy() for a in alphas], formulation="dual", kernels=(Kx, Ky),
        bandwidth=1.1, lambda_penalty=0.3, lambda_distortion=2.0,
    )  # fmt: skip
    assert got["loss"] == pytest.approx(float(ref), rel=1e-10)


def test_linear_kernel_given_as_a_matrix_is_the_linear_dual_and_the_primal():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(30, 40)), rng.normal(size=(25, 12))
    alphas = [rng.normal(size=(30, 3)) * 0.01, rng.normal(size=(25, 3)) * 0.01]
    kw = {"bandwidth": 0.8, "lambda_penalty": 0.3, "lambda_distortion": 2.0}
    given = M.objective(X, Y, alphas, formulation="dual", kernels=(X @ X.T, Y @ Y.T), **kw)
    dual = M.objective(X, Y, alphas, formulation="dual", **kw)
    primal = M.objective(X, Y, [X.T @ alphas[0], Y.T @ alphas[1]], **kw)
    for key in ("loss", "mmd", "penalty", "distortion"):
        assert given[key] == pytest.approx(dual[key], rel=1e-9)
        assert primal[key] == pytest.approx(dual[key], rel=1e-9)


def test_rbf_dual_fit_is_seeded_starts_orthonormal_and_decreases_the_objective():
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(90, 6)), rng.normal(size=(80, 5)) + 0.5
    Ks = [IK.center_kernel(IK.kernel_matrix(A, "rbf", IK.median_distance(A))) for A in (X, Y)]
    mod = _Modality(X, "dual", torch.float64, "cpu", kernel=Ks[0])
    a = mod.init(3, torch.Generator().manual_seed(0), torch.float64, "cpu", "random")
    torch.testing.assert_close(a.T @ mod.embed(a), torch.eye(3, dtype=torch.float64))
    kw = {
        "formulation": "dual",
        "kernels": Ks,
        "max_epochs": 40,
        "bandwidth": 1.0,
        "lr": 0.05,
        "symmetry_search": False,
    }
    first = M.fit_mmdma(X, Y, 3, rng=np.random.default_rng(0), **kw)
    again = M.fit_mmdma(X, Y, 3, rng=np.random.default_rng(0), **kw)
    other = M.fit_mmdma(X, Y, 3, rng=np.random.default_rng(1), **kw)
    np.testing.assert_array_equal(first.embeddings[1], again.embeddings[1])
    assert not np.allclose(first.embeddings[1], other.embeddings[1])
    loss = np.asarray(first.history["loss"])
    # Adam is not a descent method and the penalty is a (non-squared) norm with its kink at the
    # start (aᵀKa = I): the loss may go up for a few epochs, but the fit must end lower
    assert loss[-1] < 0.95 * loss[0]
    # "pca": the top kernel principal axes, so penalty and distortion start at their minimum
    pca = M.fit_mmdma(X, Y, 3, rng=np.random.default_rng(0), **(kw | {"init": "pca"}))
    assert pca.history["penalty"][0] < 0.1


def test_large_kernel_pca_start_by_lanczos_matches_eigh(monkeypatch):
    from scintegrate._core.mmdma import _modality

    rng = np.random.default_rng(5)
    X = rng.normal(size=(120, 4))
    K = IK.center_kernel(IK.kernel_matrix(X, "rbf", 2.0).astype(np.float64))
    exact = _Modality(X, "dual", torch.float64, "cpu", kernel=K)._principal_basis(3)
    monkeypatch.setattr(_modality, "_EIGH_MAX_CELLS", 50)
    lanczos = _Modality(X, "dual", torch.float64, "cpu", kernel=K)._principal_basis(3)
    Kt = torch.tensor(K)
    # the same embeddings up to the sign of each axis
    ze, zl = Kt @ exact, Kt @ lanczos
    torch.testing.assert_close(ze.abs(), zl.abs(), rtol=1e-6, atol=1e-8)


def test_bad_kernels_and_sizes():
    X = np.random.default_rng(6).normal(size=(20, 3))
    with pytest.raises(ValueError, match="cells x cells matrix"):
        IK.kernel_matrix(X, lambda A: A @ A.T[:, :5])
    with pytest.raises(ValueError, match="symmetric"):
        IK.kernel_matrix(X, lambda A: np.triu(A @ A.T))
    with pytest.raises(ValueError, match="non-finite"):
        IK.kernel_matrix(X, lambda A: np.full((20, 20), np.nan))
    with pytest.raises(ValueError, match="positive bandwidth"):
        IK.kernel_matrix(X, "rbf", 0.0)
    with pytest.raises(ValueError, match="formulation='dual'"):
        IK.prepare_input(X, lambda A: A @ A.T, "median", "primal", 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"limit 20000\): the two matrices would need 3\.7 GiB"):
        IK.check_dual_size([30_000, 10_000], ("rna", "atac"))
    IK.check_dual_size([20_000, 20_000], ("rna", "atac"))
    with pytest.raises(ValueError, match="need formulation='dual'"):
        M.fit_mmdma(X, X, 2, kernels=(X @ X.T, X @ X.T))


def test_a_small_step_along_the_negative_gradient_decreases_the_kernelised_objective():
    """The closed-form gradient is a descent direction: Armijo's condition holds for a small
    step (away from the penalty's kink)."""
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(40, 5)), rng.normal(size=(35, 4)) + 0.3
    Ks = [IK.center_kernel(IK.kernel_matrix(A, "rbf", IK.median_distance(A))) for A in (X, Y)]
    mods = [
        _Modality(A, "dual", torch.float64, "cpu", kernel=K)
        for A, K in zip((X, Y), Ks, strict=True)
    ]

    def loss(a):
        Z = [m.embed(w) for m, w in zip(mods, a, strict=True)]
        pen = sum(m.penalty(w, z) for m, w, z in zip(mods, a, Z, strict=True))
        dis = sum(m.distortion(w, z) for m, w, z in zip(mods, a, Z, strict=True))
        return M.mmd2(Z[0], Z[1], 1.0) + 0.1 * pen + 0.1 * dis

    a = [torch.tensor(rng.normal(size=(n, 3)) * 0.2, requires_grad=True) for n in (40, 35)]
    value = loss(a)
    grads = torch.autograd.grad(value, a)
    sq = float(sum((g * g).sum() for g in grads))
    for step in (1e-2, 1e-3):
        with torch.no_grad():
            moved = float(loss([w - step * g for w, g in zip(a, grads, strict=True)]))
        assert moved < float(value.detach()) - 0.5 * step * sq

"""scJMT numerics (``_core.scjmt``): gradients, blocks, biases, fit, matching, MNN smoothing."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _public_calls import joinable_rna_atac as _data

from scintegrate._core.scjmt import (
    BLOCKS,
    DEFAULT_WEIGHTS,
    Objective,
    Problem,
    fit_scjmt,
    init_params,
    match_labels,
    mnn_shift,
    mnn_smooth,
)

# the settings fit_scjmt takes (tl.scjmt declares their defaults)
FIT = {
    "n_feature_clusters": 12,
    "inner_steps": 5,
    "lr": 0.1,
    "tol": 1e-6,
    "center_couplings": False,
    "init": "matched",
}


def _tiny_problem(seed=0, center=False, activity=True):
    rng = np.random.default_rng(seed)
    G = sp.random(7, 5, density=0.6, random_state=seed, format="csr")
    R = sp.random(6, 8, density=0.5, random_state=seed + 1, format="csr")
    A = sp.csr_matrix((rng.random((5, 8)) < 0.4).astype(float))
    A[0, 0] = 1.0
    act = sp.csr_matrix(R @ A.T) if activity else None  # ATAC cells x genes
    problem = Problem(G, R, A, act, dtype=torch.float64)
    weights = {**DEFAULT_WEIGHTS, "orthogonality": 0.3, "private": 0.7, "activity": 0.8}
    objective = Objective(
        problem, n_shared=1, n_rna_only=1, n_atac_only=1, weights=weights, center_couplings=center
    )
    P = init_params(problem, 3, 2, torch.Generator().manual_seed(seed))
    for name in ("b_atac", "b_rna", "b_g", "b_r", "b_pc", "b_pg")[: 6 if activity else 4]:
        P[name] = torch.randn(P[name].shape, dtype=torch.float64, generator=torch.Generator())
    return objective, P


@pytest.mark.parametrize(("center", "activity"), [(False, True), (True, True), (False, False)])
def test_gradients_match_finite_differences(center, activity):
    objective, P = _tiny_problem(center=center, activity=activity)
    names = sorted(P)

    def f(*tensors):
        return objective.full(dict(zip(names, tensors, strict=True)))[0]

    inputs = tuple(P[n].detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize(("center", "activity"), [(False, True), (True, True), (False, False)])
@pytest.mark.parametrize("block", BLOCKS)
def test_block_gradients_are_the_full_gradient(block, center, activity):
    """The closed-form gradient of each block (what the fit steps with) against autograd of the
    whole objective, with every term switched on (orthogonality and private included)."""
    objective, P = _tiny_problem(1, center=center, activity=activity)
    cache: dict = {}
    objective.fill_cache("cells" if block in BLOCKS[:4] else "features", P, cache)
    objective.prepare_block(block, P, cache)
    x = P[block].detach().clone().requires_grad_(True)
    full_grad = torch.autograd.grad(objective.full({**P, block: x})[0], x)[0]
    torch.testing.assert_close(objective.block_grad(block, P, cache), full_grad)


def test_activity_term_matches_dense_reference():
    """The gene activity term: ||P - (C_1 Σ_g C_gᵀ + b_pc 1ᵀ + 1 b_pgᵀ)||² / total variance of P."""
    objective, P = _tiny_problem(3)
    assert objective.has_activity
    _, terms = objective.full(P)
    act = objective.p.P
    dense = act.X.to_dense()
    c1, cg = torch.softmax(P["C_atac"], 1), torch.softmax(P["C_g"], 1)
    model = c1 @ P["Sigma_g"] @ cg.T + P["b_pc"][:, None] + P["b_pg"][None, :]
    expected = ((dense - model) ** 2).sum() / ((dense - dense.mean()) ** 2).sum()
    torch.testing.assert_close(terms["activity"], expected)
    assert act.shape == tuple(dense.shape)
    # weight 0 (or no P) leaves the term out of the objective
    weights = {**objective.w, "activity": 0.0}
    off = Objective(objective.p, 1, 1, 1, weights)
    assert not off.has_activity and float(off.full(P)[1]["activity"]) == 0.0


def test_closed_form_biases_zero_the_gradient():
    objective, P = _tiny_problem(2)
    objective.update_biases(P)
    biases = ("b_atac", "b_r", "b_rna", "b_g", "b_pc", "b_pg")
    xs = {b: P[b].detach().clone().requires_grad_(True) for b in biases}
    grads = torch.autograd.grad(objective.full({**P, **xs})[0], list(xs.values()))
    for g in grads:
        assert float(g.abs().max()) < 1e-10


def test_loss_decreases_and_simplex():
    m = _data()
    G, R = sp.csr_matrix(m["rna"].X), sp.csr_matrix(m["atac"].X)
    A = sp.csr_matrix(m["atac"].varm["gene_activity"].T)
    res = fit_scjmt(
        np.log1p(G),
        R.sign(),
        A,
        n_shared=3,
        max_iter=40,
        n_restarts=2,
        rng=np.random.default_rng(0),
        **FIT,
    )
    loss = np.asarray(res.history["loss"])
    assert loss[-1] < loss[0] - 0.1
    assert np.all(np.diff(loss) < 1e-3)  # recorded every 10 iterations: never up
    assert len(res.restart_losses) == 2 and res.loss == pytest.approx(min(res.restart_losses))
    for C in (res.C_rna, res.C_atac, res.C_g, res.C_r):
        assert np.all(C >= 0)
        np.testing.assert_allclose(C.sum(1), 1.0, atol=1e-6)


def test_match_labels_recovers_planted_pairs_and_private_clusters():
    # RNA clusters 0..3 with distinct gene programs; ATAC clusters are RNA clusters 2, 0 and a new
    # one (ATAC-only), seen through a gene activity map with 2 regions per gene
    rng = np.random.default_rng(0)
    n_genes = 60
    programs = rng.random((5, n_genes)) < 0.3
    A = sp.csr_matrix(np.kron(np.eye(n_genes), np.ones((1, 2))))
    lab_rna = np.repeat(np.arange(4), 30)
    G = programs[lab_rna].astype(float) + 0.3 * rng.random((120, n_genes))
    lab_atac = np.repeat(np.arange(3), 25)
    atac_types = np.array([2, 0, 4])
    R = np.repeat(programs[atac_types[lab_atac]], 2, axis=1) * (rng.random((75, 120)) < 0.6)
    dim_rna, dim_atac = match_labels(G, R, A, lab_rna, lab_atac, 2, 2, 1)
    # shared dims 0, 1 hold the pairs (RNA 0, ATAC 1) and (RNA 2, ATAC 0), in RNA order
    np.testing.assert_array_equal(dim_rna, [0, 2, 1, 3])
    np.testing.assert_array_equal(dim_atac, [1, 0, 4])


def test_mnn_smoothing_matches_dense_reference():
    rng = np.random.default_rng(0)
    c_atac = rng.dirichlet(np.ones(3), 40)
    c_rna = rng.dirichlet(np.ones(3), 50)
    c_atac[0] = [0.999, 0.0005, 0.0005]
    c_rna[np.argmax(c_rna[:, 0])] = [0.3, 0.4, 0.3]  # nothing near the ATAC cell 0
    out, moved = mnn_smooth(c_atac, c_rna, n_neighbors=5)
    d = ((c_atac[:, None, :] - c_rna[None, :, :]) ** 2).sum(-1)
    knn_a = np.argsort(d, axis=1)[:, :5]
    knn_r = np.argsort(d.T, axis=1)[:, :5]
    for p in range(40):
        mutual = [q for q in knn_a[p] if p in knn_r[q]]
        if not mutual:
            np.testing.assert_array_equal(out[p], c_atac[p])
            assert not moved[p]
            continue
        w = np.exp(-d[p, mutual])
        np.testing.assert_allclose(out[p], w @ c_rna[mutual] / w.sum())
    assert moved.sum() > 10


def test_mnn_shift_moves_every_cell_by_its_nearest_anchors_mean_shift():
    rng = np.random.default_rng(1)
    # two ATAC types, one next to the RNA cells, one far from every RNA cell
    c_rna = rng.dirichlet([20, 2, 2], 60)
    c_atac = np.vstack([rng.dirichlet([18, 3, 2], 30), rng.dirichlet([2, 2, 30], 10)])
    smoothed, moved = mnn_smooth(c_atac, c_rna, n_neighbors=6)
    out, moved_too = mnn_shift(c_atac, c_rna, n_neighbors=6)
    np.testing.assert_array_equal(moved, moved_too)
    anchors = np.flatnonzero(moved)
    assert 5 < len(anchors) < 40
    shift = smoothed - c_atac
    for p in range(40):  # slow reference: dense distances to every anchor
        d = ((c_atac[anchors] - c_atac[p]) ** 2).sum(1)
        nearest = anchors[np.argsort(d, kind="stable")[:6]]
        expected = np.maximum(c_atac[p] + shift[nearest].mean(0), 0)
        np.testing.assert_allclose(out[p], expected / expected.sum(), atol=1e-12)
    np.testing.assert_allclose(out.sum(1), 1.0)
    assert (out >= 0).all()
    # the cells without a mutual RNA neighbour keep their factor under the mean, and move with
    # their anchors under the shift
    alone = np.flatnonzero(~moved)
    assert len(alone) > 5
    np.testing.assert_array_equal(smoothed[alone], c_atac[alone])
    assert np.abs(out[alone] - c_atac[alone]).sum(1).min() > 1e-3


def test_csr_input_is_not_modified():
    """Unsorted CSR input is sorted in a private copy, never in place."""
    G = sp.random(7, 5, density=0.6, random_state=0, format="csr")
    G.indices[:2] = G.indices[:2][::-1].copy()
    G.data[:2] = G.data[:2][::-1].copy()
    G.has_sorted_indices = False
    before = G.indices.copy()
    problem = Problem(G, sp.random(6, 8, density=0.5, random_state=1, format="csr"), sp.eye(5, 8))
    np.testing.assert_array_equal(G.indices, before)
    np.testing.assert_allclose(problem.G.X.to_dense().numpy(), G.toarray(), rtol=1e-6)

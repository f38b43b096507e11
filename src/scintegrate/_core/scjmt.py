"""scJMT: joint matrix tri-factorization of unpaired RNA and ATAC (Zhang et al. 2021), in torch.

Arrays in, arrays out. Notation of the paper, objective (3), with RNA ``G`` (n_rna x genes),
ATAC ``R`` (n_atac x regions) and the gene activity matrix ``A`` (genes x regions)::

    L = w_atac · E(R, C_1 Σ_r C_rᵀ + b_1 1ᵀ + 1 b_rᵀ) + w_rna · E(G, C_2 Σ_g C_gᵀ + b_2 1ᵀ + 1 b_gᵀ)
        + w_activity · E(P, C_1 Σ_g C_gᵀ + b_p 1ᵀ + 1 b_pgᵀ)
        - w_sigma · cos(Σ_r, Σ_g) - w_features · cos(C_g, A C_r)
        + w_private · (||C_2[:, atac-only]||² / n_rna + ||C_1[:, rna-only]||² / n_atac)

where ``cos(X, Y) = <X, Y>_F / (||X||_F ||Y||_F)``, every row of ``C_1, C_2, C_g, C_r`` is on the
simplex (a row softmax of free logits), and ``E(X, M) = ||X - M||²_F / ||X - mean(X)||²_F`` is
the squared reconstruction error as a fraction of the data's total variance (the paper's
``||X - M||²_F`` divided by a constant, which makes the weights comparable across data sizes).
The latent cell-cluster dimensions are ordered shared, RNA-only, ATAC-only (``N_1 + N_2 - k`` in
the paper); the last term keeps each modality's cells out of the other's private clusters.
The ``activity`` term is not in the scJMT paper: it is how its published successor, scMoMaT
(Zhang et al. 2023), joins unpaired modalities. ``P`` is the ATAC cells' gene activity (their
binarised peaks summed over each gene's linked peaks, then binarised: scMoMaT's "pseudo-RNA"),
reconstructed with the *same* association ``Σ_g`` and gene factors ``C_g`` as the RNA, so that the
ATAC cells' factors must explain gene-level data in the RNA's terms. Without it the modalities
are tied only by the two cosines, which on real data (SNARE-seq) leave them unaligned.
Two optional extras, off by default: ``- w_orthogonality · (o(C_1) + o(C_2))`` with
``o(C) = ||diag(CᵀC)|| / ||CᵀC||_F`` (the authors' code's cell-factor orthogonality term), and
``center_couplings`` (both cosines on column-centred matrices; not in the paper).

Optimisation (the paper's block-wise scheme, full batch): each iteration updates the blocks
``C_1, C_2, Σ_r, Σ_g, C_r, C_g`` in turn with a few Adam steps each (the others fixed), then sets
the four bias vectors to their closed-form minimisers. The data enter only through products
with the data: with ``U' = [U, b_c, 1]`` and ``F' = [F, 1, b_f]`` the error is
``||X||² - 2 <U', X F'> + sum((U'ᵀU') ∘ (F'ᵀF'))``, and ``X F'`` (or ``Xᵀ U'``) is computed once
per stage, so no model matrix of cells x features is ever formed (a data matrix is held dense
only when that takes no more memory than CSR: a third of its entries non-zero). The Adam steps
take the closed-form gradient of the objective in the block (:meth:`Objective.block_grad`,
checked against autograd of the whole objective in the tests), in which every product per step
has K or M columns.

Initialisation: ``init="random"`` is the paper's (every factor N(0, 1)). ``init="matched"`` (the
default; not in the paper) clusters each modality alone by k-means, matches the clusters through
the gene activity matrix (:func:`match_labels`), adds ``strength`` to each cell's logit of its
matched dimension, and updates only ``Σ_r, Σ_g, C_r, C_g`` (cells fixed) for the first
``warm_fraction`` of the iterations. From the paper's start the two modalities are each clustered
well but often joined to the wrong partner, and the objective hardly tells the matchings apart.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from ._adam import Adam
from ._progress import progress_bar
from ._sparse import as_csr, numpy_dtype, torch_csr

WEIGHT_NAMES = ("rna", "atac", "activity", "sigma", "features", "private", "orthogonality")
DEFAULT_WEIGHTS = {
    "rna": 1.0,
    "atac": 1.0,
    "activity": 1.0,
    "sigma": 0.1,
    "features": 0.1,
    "private": 1.0,
    "orthogonality": 0.0,
}
BLOCKS = ("C_atac", "C_rna", "Sigma_r", "Sigma_g", "C_r", "C_g")


@dataclass
class SCJMTResult:
    """Factors (numpy, float64) of the best restart."""

    C_rna: np.ndarray  # n_rna x K (simplex rows)
    C_atac: np.ndarray  # n_atac x K
    C_g: np.ndarray  # genes x M
    C_r: np.ndarray  # regions x M
    Sigma_g: np.ndarray  # K x M
    Sigma_r: np.ndarray  # K x M
    b_rna: np.ndarray
    b_atac: np.ndarray
    b_g: np.ndarray
    b_r: np.ndarray
    loss: float
    terms: dict
    history: dict
    restart_losses: list = field(default_factory=list)
    n_iter: int = 0


# ------------------------------------------------------------------------------- data
class _Matrix:
    """One data matrix on the device, with the constants of the error.

    Stored as CSR (and its transpose) while under a third of the entries are non-zero, dense
    above: there a dense float32 matrix takes no more memory than CSR's value and int64 index
    per entry, and its products were 3-4x faster (600 x 500 at 68 % and 600 x 500 at 49 %
    non-zero times 82 columns, one thread: 1.0 ms dense against 3-4 ms CSR)."""

    def __init__(self, X, device, dtype):
        X = as_csr(X, dtype=np.float64)  # float64 CSR input is shared, never modified:
        if not X.has_canonical_format:  # scipy's X.sum() would sort it in place
            X = as_csr(X, canonical=True)
        self.shape = X.shape
        n, p = X.shape
        total = float(X.sum())
        sq = float(X.multiply(X).sum())
        self.sq = sq
        # total variance ||X - mean||², floored so that a constant matrix does not divide by 0
        self.scale = max(sq - total**2 / (n * p), 1e-12 * max(sq, 1.0))
        self.dense = 3 * X.nnz >= n * p
        if self.dense:
            # densified in the target precision: a float32 matrix 40 % full of 20,000 x 5,000
            # peaked 686 MB above its start this way, 1,146 MB through a float64 dense copy
            self.X = torch.as_tensor(X.astype(numpy_dtype(dtype)).toarray(), device=device)
            self.Xt = self.X.T
        else:
            self.X = _to_torch_csr(X, device, dtype)
            self.Xt = _to_torch_csr(as_csr(X.T), device, dtype)
        self.row_sum = torch.as_tensor(np.asarray(X.sum(1)).ravel(), device=device, dtype=dtype)
        self.col_sum = torch.as_tensor(np.asarray(X.sum(0)).ravel(), device=device, dtype=dtype)

    def times(self, F: torch.Tensor) -> torch.Tensor:
        """``X F``."""
        return self.X @ F if self.dense else torch.sparse.mm(self.X, F)

    def t_times(self, U: torch.Tensor) -> torch.Tensor:
        """``Xᵀ U``."""
        return self.Xt @ U if self.dense else torch.sparse.mm(self.Xt, U)


def _to_torch_csr(X: sp.csr_matrix, device, dtype) -> torch.Tensor:
    if not X.has_sorted_indices:
        X = as_csr(X, canonical=True)  # sorted in a private copy: the caller's X stays as it is
    return torch_csr(X, dtype=dtype, device=device)


def _to_torch_coo(X, device, dtype) -> torch.Tensor:
    X = sp.coo_matrix(X)
    idx = torch.as_tensor(np.vstack([X.row, X.col]).astype(np.int64))
    return torch.sparse_coo_tensor(
        idx,
        torch.as_tensor(X.data),
        size=X.shape,
        dtype=dtype,
        device=device,
        check_invariants=False,
    ).coalesce()


def _row_normalised(A) -> sp.csr_matrix:
    """Gene activity rows normalised to sum 1 (as the authors do); empty rows stay 0."""
    A = as_csr(A, dtype=np.float64)
    rows = np.asarray(A.sum(1)).ravel()
    return sp.csr_matrix(sp.diags(np.where(rows > 0, 1.0 / np.where(rows > 0, rows, 1), 0)) @ A)


class Problem:
    """The matrices of one scJMT problem on a device: RNA ``G``, ATAC ``R``, gene activity
    ``A`` and, optionally, the ATAC cells' gene activity scores ``P`` (ATAC cells x genes)."""

    def __init__(self, G, R, A, P=None, *, device="cpu", dtype=torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        self.G = _Matrix(G, self.device, dtype)
        self.R = _Matrix(R, self.device, dtype)
        if P is not None and (P.shape[0] != R.shape[0] or P.shape[1] != G.shape[1]):
            raise ValueError(
                f"P has shape {P.shape}; it must be ATAC cells x genes = "
                f"({R.shape[0]}, {G.shape[1]})."
            )
        self.P = None if P is None else _Matrix(P, self.device, dtype)
        A = _row_normalised(A)
        self.A = _to_torch_coo(A, self.device, dtype)
        self.At = _to_torch_coo(A.T, self.device, dtype)


# --------------------------------------------------------------------------- objective
def _aug(core: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    return torch.cat([core, first[:, None], second[:, None]], dim=1)


def _sq_error(x_sq: float, u_aug, f_aug, cross) -> torch.Tensor:
    """||X - U' F'ᵀ||² from ||X||², the factors and the cross term <U', X F'>."""
    return x_sq - 2.0 * cross + ((u_aug.T @ u_aug) * (f_aug.T @ f_aug)).sum()


def _gram(x: torch.Tensor) -> torch.Tensor:
    return x.T @ x


def _sigma_gram(sigma: torch.Tensor, f_gram: torch.Tensor) -> torch.Tensor:
    """``S' G_F[:, :M]`` with ``S' = diag(Σ, 1, 1)``: the feature-side Gram ``G_F = F'ᵀF'`` seen
    from the cell clusters, (K + 2) x M."""
    m = sigma.shape[1]
    return torch.cat([sigma @ f_gram[:m, :m], f_gram[m:, :m]])


def _orthogonality(c: torch.Tensor) -> torch.Tensor:
    """||diag(CᵀC)|| / ||CᵀC||_F: 1 when every row is one-hot (hard clusters), smaller when
    cells are spread over several clusters (the authors' cell-factor orthogonality term)."""
    gram = c.T @ c
    return torch.linalg.norm(torch.diagonal(gram)) / torch.linalg.norm(gram).clamp_min(1e-30)


def _cos(x: torch.Tensor, y: torch.Tensor, center: bool = False) -> torch.Tensor:
    """Frobenius cosine; with ``center`` of the column-centred matrices (each column's mean over
    the rows removed first)."""
    if center:
        x = x - x.mean(0, keepdim=True)
        y = y - y.mean(0, keepdim=True)
    return (x * y).sum() / (torch.linalg.norm(x) * torch.linalg.norm(y)).clamp_min(1e-30)


def _cos_grad(x: torch.Tensor, y: torch.Tensor, center: bool = False) -> torch.Tensor:
    """The gradient of :func:`_cos` with respect to ``x``: ``ỹ / (|x̃| |ỹ|) - cos · x̃ / |x̃|²``
    with ``x̃, ỹ`` the (centred) matrices (centring is a symmetric projection, and this vector is
    centred already)."""
    if center:
        x = x - x.mean(0, keepdim=True)
        y = y - y.mean(0, keepdim=True)
    nx, ny = torch.linalg.norm(x), torch.linalg.norm(y)
    norms = (nx * ny).clamp_min(1e-30)
    cos = (x * y).sum() / norms
    return y / norms - cos * x / (nx * nx).clamp_min(1e-30)


class Objective:
    """Objective (3) and its terms as functions of the parameter tensors (logits, Σ, biases)."""

    def __init__(
        self,
        problem: Problem,
        n_shared: int,
        n_rna_only: int,
        n_atac_only: int,
        weights,
        center_couplings: bool = False,
    ):
        self.p = problem
        self.center = center_couplings
        self.w = {k: float(v) for k, v in weights.items()}
        k = n_shared
        self.rna_only = slice(k, k + n_rna_only)
        self.atac_only = slice(k + n_rna_only, k + n_rna_only + n_atac_only)
        self.has_private = n_rna_only + n_atac_only > 0
        self.has_activity = problem.P is not None and self.w["activity"] > 0

    # pieces -------------------------------------------------------------------
    @staticmethod
    def simplex(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)

    def private(self, c_rna: torch.Tensor, c_atac: torch.Tensor) -> torch.Tensor:
        if not self.has_private:
            return c_rna.new_zeros(())
        return (c_rna[:, self.atac_only] ** 2).sum() / len(c_rna) + (
            c_atac[:, self.rna_only] ** 2
        ).sum() / len(c_atac)

    def full(self, P: dict) -> tuple[torch.Tensor, dict]:
        """The objective of all parameters ``P`` (autograd-able), with its terms."""
        c1, c2 = self.simplex(P["C_atac"]), self.simplex(P["C_rna"])
        cg, cr = self.simplex(P["C_g"]), self.simplex(P["C_r"])
        terms = {}
        for name, data, c, sigma, f, bc, bf in (
            ("atac", self.p.R, c1, P["Sigma_r"], cr, P["b_atac"], P["b_r"]),
            ("rna", self.p.G, c2, P["Sigma_g"], cg, P["b_rna"], P["b_g"]),
        ):
            u_aug = _aug(c @ sigma, bc, torch.ones_like(bc))
            f_aug = _aug(f, torch.ones_like(bf), bf)
            cross = (u_aug * data.times(f_aug)).sum()
            terms[name] = _sq_error(data.sq, u_aug, f_aug, cross) / data.scale
        if self.has_activity:
            u_aug = _aug(c1 @ P["Sigma_g"], P["b_pc"], torch.ones_like(P["b_pc"]))
            f_aug = _aug(cg, torch.ones_like(P["b_pg"]), P["b_pg"])
            cross = (u_aug * self.p.P.times(f_aug)).sum()
            terms["activity"] = _sq_error(self.p.P.sq, u_aug, f_aug, cross) / self.p.P.scale
        else:
            terms["activity"] = c1.new_zeros(())
        terms["sigma"] = _cos(P["Sigma_r"], P["Sigma_g"], self.center)
        terms["features"] = _cos(cg, torch.sparse.mm(self.p.A, cr), self.center)
        terms["private"] = self.private(c2, c1)
        terms["orthogonality"] = _orthogonality(c1) + _orthogonality(c2)
        return self.combine(terms), terms

    def combine(self, terms: dict) -> torch.Tensor:
        w = self.w
        return (
            w["atac"] * terms["atac"]
            + w["rna"] * terms["rna"]
            + w["activity"] * terms["activity"]
            - w["sigma"] * terms["sigma"]
            - w["features"] * terms["features"]
            + w["private"] * terms["private"]
            - w["orthogonality"] * terms["orthogonality"]
        )

    # blocks -------------------------------------------------------------------
    # The inner steps use closed-form gradients of the objective with respect to one block,
    # the others fixed. Profiled on the unequal simulated scenario with 20 cell clusters (one
    # thread): autograd spent about as long building and walking its graph of small operations
    # as on the arithmetic; the forms below need only K- or M-column products per step.
    def _error_parts(self, block: str, P: dict) -> list:
        """The reconstruction errors that depend on a cell-side block: (coefficient 2 w / scale,
        the cache key of the fixed feature side, Σ, the name of C, b_c) for each."""
        atac = (self.w["atac"], self.p.R, "f_atac", "Sigma_r", "C_atac", "b_atac")
        rna = (self.w["rna"], self.p.G, "f_rna", "Sigma_g", "C_rna", "b_rna")
        activity = (self.w["activity"], self.p.P, "f_activity", "Sigma_g", "C_atac", "b_pc")
        parts = {
            "C_atac": [atac] + ([activity] if self.has_activity else []),
            "C_rna": [rna],
            "Sigma_r": [atac],
            "Sigma_g": [rna] + ([activity] if self.has_activity else []),
        }[block]
        return [
            (2.0 * w / data.scale, key, P[sigma], c, P[bc]) for w, data, key, sigma, c, bc in parts
        ]

    def prepare_block(self, block: str, P: dict, cache: dict) -> None:
        """Products fixed while ``block`` alone is updated (after :meth:`fill_cache`)."""
        with torch.no_grad():
            if block in ("C_atac", "C_rna"):
                # dE/dC = coef (C' T - X F'[:, :M] Σᵀ), C' = [C, b_c, 1], T = S' G_F[:, :M] Σᵀ
                parts = []
                for coef, key, sigma, _, bc in self._error_parts(block, P):
                    f_gram, xf = cache[key]
                    t = _sigma_gram(sigma, f_gram) @ sigma.T
                    parts.append((coef, t, xf[:, : sigma.shape[1]] @ sigma.T, bc))
                cache["block"] = parts
            elif block in ("Sigma_r", "Sigma_g"):
                # dE/dΣ = coef (CᵀC' S' G_F[:, :M] - Cᵀ X F'[:, :M])
                parts = []
                for coef, key, _, c, bc in self._error_parts(block, P):
                    f_gram, xf = cache[key]
                    c = self.simplex(P[c])
                    m = f_gram.shape[0] - 2
                    ctc = c.T @ _aug(c, bc, torch.ones_like(bc))
                    parts.append((coef, ctc, f_gram, c.T @ xf[:, :m]))
                cache["block"] = parts
            elif block == "C_r":
                cache["c_g"] = self.simplex(P["C_g"])
            elif block == "C_g":
                cache["a_cr"] = torch.sparse.mm(self.p.A, self.simplex(P["C_r"]))

    def block_grad(self, block: str, P: dict, cache: dict) -> torch.Tensor:
        """The gradient of the objective with respect to ``P[block]`` (others fixed), from the
        products of :meth:`fill_cache` and :meth:`prepare_block`."""
        w = self.w
        with torch.no_grad():
            if block in ("Sigma_r", "Sigma_g"):
                sigma = P[block]
                grad = -w["sigma"] * _cos_grad(
                    sigma, P["Sigma_g" if block == "Sigma_r" else "Sigma_r"], self.center
                )
                for coef, ctc, f_gram, ctxf in cache["block"]:
                    grad = grad + coef * (ctc @ _sigma_gram(sigma, f_gram) - ctxf)
                return grad
            f = self.simplex(P[block])
            if block in ("C_atac", "C_rna"):
                grad = torch.zeros_like(f)
                k = f.shape[1]
                for coef, t, xf_sigma, bc in cache["block"]:
                    grad += coef * (f @ t[:k] + bc[:, None] * t[k] + t[k + 1] - xf_sigma)
                if self.has_private:
                    part = self.rna_only if block == "C_atac" else self.atac_only
                    grad[:, part] += (2.0 * w["private"] / len(f)) * f[:, part]
                if w["orthogonality"] != 0:
                    with torch.enable_grad():
                        x = f.detach().requires_grad_(True)
                        grad -= w["orthogonality"] * torch.autograd.grad(_orthogonality(x), x)[0]
            else:
                atac = block == "C_r"
                if atac:
                    errors = [(w["atac"], self.p.R, "u_atac", "b_r")]
                else:
                    errors = [(w["rna"], self.p.G, "u_rna", "b_g")]
                    if self.has_activity:
                        errors.append((w["activity"], self.p.P, "u_activity", "b_pg"))
                grad = torch.zeros_like(f)
                m = f.shape[1]
                for weight, data, key, bf in errors:
                    u_gram, xtu = cache[key]
                    # dE/dF' = (2 w / scale) (F' G_U - Xᵀ U'), F' = [F, 1, b_f]; its first M columns
                    fg = f @ u_gram[:m, :m] + u_gram[m, :m] + P[bf][:, None] * u_gram[m + 1, :m]
                    grad += (2.0 * weight / data.scale) * (fg - xtu[:, :m])
                if atac:
                    y = torch.sparse.mm(self.p.A, f)
                    grad -= w["features"] * torch.sparse.mm(
                        self.p.At, _cos_grad(y, cache["c_g"], self.center)
                    )
                else:
                    grad -= w["features"] * _cos_grad(f, cache["a_cr"], self.center)
            # through the row softmax: dL/dlogits = f ∘ (g - rowsum(g ∘ f))
            return f * (grad - (grad * f).sum(1, keepdim=True))

    def fill_cache(self, stage: str, P: dict, cache: dict) -> None:
        """Products that stay fixed while the blocks of ``stage`` are updated: ``X F'``
        (``Xᵀ U'``) and the Gram ``F'ᵀF'`` (``U'ᵀU'``) of the fixed side."""
        with torch.no_grad():
            if stage == "cells":
                for name, data, f, bf in (
                    ("atac", self.p.R, P["C_r"], P["b_r"]),
                    ("rna", self.p.G, P["C_g"], P["b_g"]),
                ):
                    f_aug = _aug(self.simplex(f), torch.ones_like(bf), bf)
                    cache[f"f_{name}"] = (_gram(f_aug), data.times(f_aug))
                if self.has_activity:
                    f_aug = _aug(self.simplex(P["C_g"]), torch.ones_like(P["b_pg"]), P["b_pg"])
                    cache["f_activity"] = (_gram(f_aug), self.p.P.times(f_aug))
            else:
                for name, data, c, sigma, bc in (
                    ("atac", self.p.R, P["C_atac"], P["Sigma_r"], P["b_atac"]),
                    ("rna", self.p.G, P["C_rna"], P["Sigma_g"], P["b_rna"]),
                ):
                    u_aug = _aug(self.simplex(c) @ sigma, bc, torch.ones_like(bc))
                    cache[f"u_{name}"] = (_gram(u_aug), data.t_times(u_aug))
                if self.has_activity:
                    bc = P["b_pc"]
                    u_aug = _aug(self.simplex(P["C_atac"]) @ P["Sigma_g"], bc, torch.ones_like(bc))
                    cache["u_activity"] = (_gram(u_aug), self.p.P.t_times(u_aug))

    def update_biases(self, P: dict) -> None:
        """Closed-form minimisers: cell biases given feature biases, then feature biases."""
        blocks = [
            (self.p.R, "C_atac", "Sigma_r", "C_r", "b_atac", "b_r"),
            (self.p.G, "C_rna", "Sigma_g", "C_g", "b_rna", "b_g"),
        ]
        if self.has_activity:
            blocks.append((self.p.P, "C_atac", "Sigma_g", "C_g", "b_pc", "b_pg"))
        with torch.no_grad():
            for data, c, sigma, f, bc, bf in blocks:
                u = self.simplex(P[c]) @ P[sigma]
                fm = self.simplex(P[f])
                n, p = data.shape
                P[bc].copy_((data.row_sum - u @ fm.sum(0) - P[bf].sum()) / p)
                P[bf].copy_((data.col_sum - fm @ u.sum(0) - P[bc].sum()) / n)


# ---------------------------------------------------------------------------- fitting
def init_params(problem: Problem, n_clusters: int, n_feature_clusters: int, generator) -> dict:
    """Logits and association matrices drawn from N(0, 1) (Algorithm 1); biases then set in
    closed form by the caller."""
    kw = {"generator": generator, "dtype": problem.dtype}

    def normal(*shape):
        return torch.randn(*shape, **kw).to(problem.device)

    K, M = n_clusters, n_feature_clusters
    zeros = {"dtype": problem.dtype, "device": problem.device}
    activity = {}
    if problem.P is not None:
        activity = {
            "b_pc": torch.zeros(problem.R.shape[0], **zeros),
            "b_pg": torch.zeros(problem.G.shape[1], **zeros),
        }
    return activity | {
        "C_atac": normal(problem.R.shape[0], K),
        "C_rna": normal(problem.G.shape[0], K),
        "C_r": normal(problem.R.shape[1], M),
        "C_g": normal(problem.G.shape[1], M),
        "Sigma_r": normal(K, M),
        "Sigma_g": normal(K, M),
        "b_atac": torch.zeros(problem.R.shape[0], dtype=problem.dtype, device=problem.device),
        "b_rna": torch.zeros(problem.G.shape[0], dtype=problem.dtype, device=problem.device),
        "b_r": torch.zeros(problem.R.shape[1], dtype=problem.dtype, device=problem.device),
        "b_g": torch.zeros(problem.G.shape[1], dtype=problem.dtype, device=problem.device),
    }


def _assign(score: np.ndarray, n_shared: int) -> list[tuple[int, int]]:
    """The ``n_shared`` (row, column) pairs of largest total ``score``, each row and column used
    at most once (a linear assignment with dummy rows and columns for the unmatched ones)."""
    from scipy.optimize import linear_sum_assignment

    n_rows, n_cols = score.shape
    size = n_rows + n_cols - n_shared
    cost = np.zeros((size, size))
    cost[:n_rows, :n_cols] = -score
    cost[n_rows:, n_cols:] = 1e12  # a dummy row never takes a dummy column: exactly n_shared pairs
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if r < n_rows and c < n_cols]


def _centred_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlations between the rows of ``x`` and of ``y`` (over columns)."""
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-30)
    return x @ y.T


def _embedding(X, kind: str, n_components: int, seed: int) -> np.ndarray:
    """Cells in a truncated-SVD space for k-means: RNA as given (log-normalised by ``tl.scjmt``),
    ATAC as TF-IDF (``log1p(1e4 · x / cell total · log(1 + n_cells / region total))``, the usual
    LSI weighting, which removes the sequencing-depth axis that dominates binary ATAC data)."""
    from sklearn.decomposition import TruncatedSVD

    X = as_csr(X, dtype=np.float64)  # read only: the TF-IDF below builds a new matrix
    if kind == "atac" and (X.data >= 0).all():  # (preprocess=False may pass signed values)
        rows = np.asarray(X.sum(1)).ravel()
        idf = np.log1p(X.shape[0] / np.maximum(np.asarray(X.sum(0)).ravel(), 1e-12))
        X = sp.csr_matrix(sp.diags(1.0 / np.maximum(rows, 1e-12)) @ X @ sp.diags(idf))
        np.log1p(1e4 * X.data, out=X.data)
    k = min(n_components, min(X.shape) - 1)
    Z = TruncatedSVD(k, random_state=seed).fit_transform(X) if k >= 1 else X.toarray()
    return Z - Z.mean(0)


def _kmeans(Z: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    k = min(k, len(np.unique(Z, axis=0)))
    return KMeans(k, n_init=10, random_state=seed).fit_predict(Z)


def match_labels(
    G, R, A, labels_rna, labels_atac, n_shared: int, n_rna_only: int, n_atac_only: int
):
    """Latent dimension of every RNA and ATAC cluster: clusters matched through the gene activity.

    RNA cluster profiles (mean of ``G`` over the cluster's cells) are compared with ATAC cluster
    gene-activity profiles (mean of ``R`` over the cluster's cells, mapped to genes by the
    row-normalised ``A``); both are centred per gene over the modality's clusters. The
    ``n_shared`` pairs of largest total Pearson correlation (a linear assignment) take the shared
    dimensions ``0 .. n_shared - 1``, in the order of the RNA clusters; the other RNA (ATAC)
    clusters take the RNA-only (ATAC-only) dimensions. Returns two int arrays mapping each
    modality's cluster label to its dimension.
    """

    def means(X, labels):
        onehot = sp.csr_matrix(
            (np.ones(len(labels)), (labels, np.arange(len(labels)))),
            shape=(labels.max() + 1, len(labels)),
        )
        sizes = np.maximum(np.asarray(onehot.sum(1)).ravel(), 1)
        return np.asarray((onehot @ X).todense() if sp.issparse(X) else onehot @ X) / sizes[:, None]

    A = _row_normalised(A)
    rna = means(as_csr(G, dtype=np.float64), labels_rna)
    atac = np.asarray(as_csr(means(as_csr(R, dtype=np.float64), labels_atac)) @ A.T.todense())
    rna -= rna.mean(0)
    atac -= atac.mean(0)
    pairs = _assign(_centred_corr(rna, atac), min(n_shared, len(rna), len(atac)))
    dim_rna = np.full(len(rna), -1)
    dim_atac = np.full(len(atac), -1)
    for d, (i, j) in enumerate(sorted(pairs)):
        dim_rna[i], dim_atac[j] = d, d
    own_rna = n_shared + np.arange(n_rna_only)
    own_atac = n_shared + n_rna_only + np.arange(n_atac_only)
    for dims, own in ((dim_rna, own_rna), (dim_atac, own_atac)):
        free = np.flatnonzero(dims < 0)
        dims[free] = own[: len(free)]
    return dim_rna, dim_atac


def _fit_once(
    objective: Objective,
    P: dict,
    *,
    max_iter: int,
    inner_steps: int,
    lr: float,
    tol: float,
    progress=None,
    blocks: tuple = BLOCKS,
) -> tuple[dict, dict, int]:
    """Block-wise Adam updates of ``blocks`` for ``max_iter`` iterations; ``progress`` is the
    caller's bar (advanced once per iteration) or ``None``."""
    objective.update_biases(P)
    optimizers = {name: Adam([P[name]], lr) for name in blocks}
    history = {k: [] for k in ("iteration", "loss", *WEIGHT_NAMES, "seconds")}
    cache: dict = {}
    tic = time.perf_counter()
    previous = math.inf
    n_iter = 0
    for it in range(max_iter + 1):
        objective.fill_cache("cells", P, cache)
        if it % 10 == 0 or it == max_iter:
            with torch.no_grad():
                loss, terms = objective.full(P)
            loss = float(loss)
            history["iteration"].append(it)
            history["loss"].append(loss)
            for k in WEIGHT_NAMES:
                history[k].append(float(terms[k]))
            history["seconds"].append(time.perf_counter() - tic)
            if abs(previous - loss) <= tol * max(abs(loss), 1e-12):
                break
            previous = loss
        if it == max_iter:
            break
        for stage, stage_blocks in (("cells", BLOCKS[:4]), ("features", BLOCKS[4:])):
            if stage == "features":
                objective.fill_cache("features", P, cache)
            for block in stage_blocks:
                if block not in blocks:
                    continue
                objective.prepare_block(block, P, cache)
                opt = optimizers[block]
                for _ in range(inner_steps):
                    opt.step([objective.block_grad(block, P, cache)])
        objective.update_biases(P)
        n_iter = it + 1
        if progress is not None:
            progress.update(1)
    return P, history, n_iter


def fit_scjmt(
    G,
    R,
    A,
    P=None,
    *,
    n_shared: int,
    n_rna_only: int = 0,
    n_atac_only: int = 0,
    n_feature_clusters: int,
    weights: dict | None = None,
    max_iter: int,
    inner_steps: int,
    lr: float,
    tol: float,
    n_restarts: int,
    center_couplings: bool,
    init: str,
    warm_fraction: float = 0.25,
    device: str = "cpu",
    dtype=torch.float32,
    rng: np.random.Generator,
    progress: bool = False,
) -> SCJMTResult:
    """Fit scJMT to RNA ``G`` (cells x genes), ATAC ``R`` (cells x regions) and gene activity
    ``A`` (genes x regions); the restart with the lowest final objective is returned.

    ``P`` (ATAC cells x genes, optional): the ATAC cells' gene activity scores, reconstructed
    as ``C_1 Σ_g C_gᵀ`` plus biases with the RNA's association and gene factors (the
    ``"activity"`` term; scMoMaT's pseudo-RNA). ``None`` or ``weights["activity"] == 0`` leave it
    out.

    ``init="matched"`` starts from per-modality k-means clusters matched through ``A`` and
    updates only the association and feature factors for the first ``warm_fraction`` of
    ``max_iter`` (see the module docstring); ``init="random"`` is the paper's N(0, 1) start.
    ``weights`` missing from the mapping take :data:`DEFAULT_WEIGHTS`. The hyperparameters have
    no defaults here: :func:`scintegrate.tl.scjmt` declares them, once. ``progress`` shows a bar
    over the ``n_restarts * max_iter`` iterations."""
    K = n_shared + n_rna_only + n_atac_only
    M = n_feature_clusters
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    problem = Problem(G, R, A, P, device=device, dtype=dtype)
    objective = Objective(problem, n_shared, n_rna_only, n_atac_only, w, center_couplings)
    threads = torch.get_num_threads()
    if problem.device.type == "cpu" and _small(G, R):
        # the per-step tensors are tiny: extra threads only add start-up and spinning time
        torch.set_num_threads(1)
    try:
        settings = {
            "n_restarts": n_restarts,
            "max_iter": max_iter,
            "inner_steps": inner_steps,
            "lr": lr,
            "tol": tol,
            "init": init,
            "warm_fraction": warm_fraction,
        }
        with progress_bar(
            total=max_iter * n_restarts, desc="scJMT", unit="it", disable=not progress
        ) as bar:
            best = _restarts(objective, problem, (K, M), rng, bar, (G, R, A), settings)
    finally:
        torch.set_num_threads(threads)
    loss, terms, P, history, n_iter, losses = best

    def out(x):
        return x.detach().to("cpu", torch.float64).numpy()

    return SCJMTResult(
        C_rna=out(torch.softmax(P["C_rna"], 1)),
        C_atac=out(torch.softmax(P["C_atac"], 1)),
        C_g=out(torch.softmax(P["C_g"], 1)),
        C_r=out(torch.softmax(P["C_r"], 1)),
        Sigma_g=out(P["Sigma_g"]),
        Sigma_r=out(P["Sigma_r"]),
        b_rna=out(P["b_rna"]),
        b_atac=out(P["b_atac"]),
        b_g=out(P["b_g"]),
        b_r=out(P["b_r"]),
        loss=loss,
        terms=terms,
        history=history,
        restart_losses=losses,
        n_iter=n_iter,
    )


def _small(G, R) -> bool:
    """Fewer than 5,000 cells and 2 million stored values in both matrices together."""
    n = G.shape[0] + R.shape[0]
    nnz = sum(X.nnz if sp.issparse(X) else np.count_nonzero(X) for X in (G, R))
    return n < 5000 and nnz < 2_000_000


def _restarts(objective, problem, sizes, rng, progress, data, settings, strength=3.0):
    """Run ``n_restarts`` fits; return the best (loss, terms, params, history, n_iter, all losses)."""
    K, M = sizes
    init, max_iter = settings["init"], settings["max_iter"]
    best = None
    losses = []
    kw = {k: settings[k] for k in ("inner_steps", "lr", "tol")} | {"progress": progress}
    warm_iter = round(settings["warm_fraction"] * max_iter) if init == "matched" else 0
    n_s, n_r = objective.rna_only.start, objective.rna_only.stop - objective.rna_only.start
    n_a = objective.atac_only.stop - objective.atac_only.start
    if init == "matched":
        G, R, A = data
        seed = int(rng.integers(2**31 - 1))
        Z_rna, Z_atac = _embedding(G, "rna", 20, seed), _embedding(R, "atac", 20, seed)
    for _ in range(settings["n_restarts"]):
        seed = int(rng.integers(2**63 - 1))
        generator = torch.Generator().manual_seed(seed)
        P = init_params(problem, K, M, generator)
        n_warm = 0
        warm_history = None
        if init == "matched":
            lab_rna = _kmeans(Z_rna, n_s + n_r, seed % (2**31))
            lab_atac = _kmeans(Z_atac, n_s + n_a, seed % (2**31))
            dim_rna, dim_atac = match_labels(G, R, A, lab_rna, lab_atac, n_s, n_r, n_a)
            with torch.no_grad():
                for name, dims in (("C_rna", dim_rna[lab_rna]), ("C_atac", dim_atac[lab_atac])):
                    onehot = torch.zeros_like(P[name])
                    onehot[torch.arange(len(dims)), torch.as_tensor(dims)] = strength
                    P[name] = P[name] + onehot
            P, warm_history, n_warm = _fit_once(
                objective, P, max_iter=warm_iter, blocks=BLOCKS[2:], **kw
            )
        P, history, n_iter = _fit_once(objective, P, max_iter=max_iter - n_warm, **kw)
        if warm_history is not None:
            history["iteration"] = [i + n_warm for i in history["iteration"]]
            # the main phase's first record repeats the warm phase's last one
            history = {k: warm_history[k] + history[k][1:] for k in history}
        with torch.no_grad():
            loss, terms = objective.full(P)
        losses.append(float(loss))
        if best is None or float(loss) < best[0]:
            best = (
                float(loss),
                {k: float(v) for k, v in terms.items()},
                P,
                history,
                n_iter + n_warm,
            )
    return (*best, losses)


# ------------------------------------------------------------------------- post-processing
def mnn_smooth(
    c_atac: np.ndarray, c_rna: np.ndarray, n_neighbors: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Equations (4)-(5): each ATAC cell's factor becomes the weighted mean of the RNA cells it is
    a mutual nearest neighbour of, weights ``exp(-||C_1(p) - C_2(q)||²)``.

    Neighbours are the ``n_neighbors`` nearest cells of the other modality (Euclidean, exact kNN
    on a tree); the pairs are held in sparse matrices, never an n x n one. ATAC cells without a
    mutual neighbour (for example a cell type absent from the RNA data) keep their factor.
    Returns the smoothed ATAC factors and a boolean mask of the cells that were moved.
    """
    from sklearn.neighbors import NearestNeighbors

    n1, n2 = len(c_atac), len(c_rna)
    k1 = min(n_neighbors, n2)
    k2 = min(n_neighbors, n1)
    _, to_rna = NearestNeighbors(n_neighbors=k1).fit(c_rna).kneighbors(c_atac)
    _, to_atac = NearestNeighbors(n_neighbors=k2).fit(c_atac).kneighbors(c_rna)
    a_to_r = sp.csr_matrix(
        (np.ones(n1 * k1), (np.repeat(np.arange(n1), k1), to_rna.ravel())), shape=(n1, n2)
    )
    r_to_a = sp.csr_matrix(
        (np.ones(n2 * k2), (to_atac.ravel(), np.repeat(np.arange(n2), k2))), shape=(n1, n2)
    )
    mutual = a_to_r.multiply(r_to_a).tocoo()
    d2 = np.sum((c_atac[mutual.row] - c_rna[mutual.col]) ** 2, axis=1)
    W = sp.csr_matrix((np.exp(-d2), (mutual.row, mutual.col)), shape=(n1, n2))
    totals = np.asarray(W.sum(1)).ravel()
    moved = totals > 0
    out = c_atac.copy()
    out[moved] = (W[moved] @ c_rna) / totals[moved, None]
    return out, moved


def mnn_shift(
    c_atac: np.ndarray, c_rna: np.ndarray, n_neighbors: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Each ATAC cell shifted by the mean shift that :func:`mnn_smooth` gives its
    ``n_neighbors`` nearest moved ATAC cells (itself among them when it was moved).

    The shifts are the correction vectors of mutual-nearest-neighbour batch correction
    (Haghverdi et al., Nat. Biotechnol. 2018), averaged over neighbours in the ATAC factor space:
    the ATAC cells keep their own arrangement within a cell type and move with the anchors
    around them, also those without a mutual RNA neighbour, where :func:`mnn_smooth` collapses
    the moved cells onto RNA means and leaves the others behind. Rows are clipped at zero and
    rescaled to sum 1 (the factors are on the simplex). Neighbour lists are sparse (ATAC cells
    x moved cells), never a dense n x n matrix. Returns the shifted factors and the mask of
    the moved cells (where none moved, the factors are returned unchanged).
    """
    from sklearn.neighbors import NearestNeighbors

    smoothed, moved = mnn_smooth(c_atac, c_rna, n_neighbors=n_neighbors)
    anchors = np.flatnonzero(moved)
    if len(anchors) == 0:
        return c_atac.copy(), moved
    k = min(n_neighbors, len(anchors))
    _, nearest = NearestNeighbors(n_neighbors=k).fit(c_atac[anchors]).kneighbors(c_atac)
    n = len(c_atac)
    mean_of_nearest = sp.csr_matrix(
        (np.full(n * k, 1.0 / k), (np.repeat(np.arange(n), k), nearest.ravel())),
        shape=(n, len(anchors)),
    )
    out = c_atac + mean_of_nearest @ (smoothed[anchors] - c_atac[anchors])
    np.maximum(out, 0.0, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out, moved

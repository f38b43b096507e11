"""pp.quantile_norm and its array core: alignment, a slow reference, seeds, slots, bad input."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scintegrate as si
from scintegrate._core.quantile_norm import knn_vote, max_factor_clusters, quantile_norm

SCALE = np.array([3.0, 0.5, 1.5, 2.0])
SHIFT = np.array([0.05, 0.0, 0.2, 0.1])


def synthetic_factors(sizes=(300, 200), k=4, seed=0, distort=(1,)):
    """Cells of k types, each loading mostly on its own factor; batches in ``distort`` get every
    factor scaled and shifted (a monotone per-factor distortion that alignment should undo)."""
    rng = np.random.default_rng(seed)
    blocks, batches, types = [], [], []
    for b, n in enumerate(sizes):
        t = rng.integers(0, k, n)
        H = rng.gamma(2.0, 0.05, (n, k))
        H[np.arange(n), t] += rng.gamma(5.0, 0.4, n)
        if b in distort:
            H = H * SCALE[:k] + SHIFT[:k]
        blocks.append(H)
        batches += [f"b{b}"] * n
        types.append(t)
    H = np.vstack(blocks)
    perm = rng.permutation(H.shape[0])  # interleave the batches, as in real AnnData objects
    return H[perm], np.asarray(batches)[perm], np.concatenate(types)[perm]


def make_adata(H, batches):
    obs = pd.DataFrame({"batch": pd.Categorical(batches)}, index=[f"c{i}" for i in range(len(H))])
    return ad.AnnData(np.zeros((len(H), 3), dtype=np.float32), obs=obs, obsm={"X_inmf": H})


# ------------------------------------------------------------------------- slow reference
def slow_quantile_norm(H, batches, reference, *, quantiles, min_cells, n_neighbors, use_dims,
                       center, refine_knn):  # fmt: skip
    """Loop-per-cell transcription of rliger's quantileNorm with the simultaneous vote, for
    inputs small enough that no subsampling happens (every cluster <= max_sample)."""
    H = np.asarray(H, dtype=float)
    k = H.shape[1]
    dims = list(range(k)) if use_dims is None else list(use_dims)
    clusters = np.zeros(len(H), dtype=int)
    for b in np.unique(batches):
        rows = np.flatnonzero(batches == b)
        Hb = H[rows]
        n = len(rows)
        first = {}
        for i, row in enumerate(rows):
            best, best_val = -1, 0.0
            for f in dims:
                col = Hb[:, f] - (Hb[:, f].mean() if center else 0.0)
                rms = np.sqrt(np.sum(col**2) / (n - 1))
                value = (Hb[i, f] - (Hb[:, f].mean() if center else 0.0)) / rms if rms else 0.0
                if value > best_val:
                    best, best_val = f, value
            first[row] = best
        for i, row in enumerate(rows):
            if refine_knn:
                dist = np.sqrt(((Hb - Hb[i]) ** 2).sum(1))
                neighbours = rows[np.argsort(dist, kind="stable")[: min(n_neighbors, n)]]
                counts = {}
                for j in neighbours:
                    counts[first[j]] = counts.get(first[j], 0) + 1
                top = max(counts.values())
                clusters[row] = min(c for c, v in counts.items() if v == top)
            else:
                clusters[row] = first[row]
    out = H.copy()
    probs = np.linspace(0, 1, quantiles + 1)
    for b in np.unique(batches):
        for c in range(k):
            cells = np.flatnonzero((batches == b) & (clusters == c))
            ref = np.flatnonzero((batches == reference) & (clusters == c))
            if len(cells) < min_cells or len(ref) < min_cells:
                continue
            for f in range(k):
                q2 = np.quantile(H[cells, f], probs)
                q1 = np.quantile(H[ref, f], probs)
                if q1.sum() == 0 or q2.sum() == 0 or len(set(q1)) < 2 or len(set(q2)) < 2:
                    out[cells, f] = 0
                    continue
                knots = {}
                for x, y in zip(q2, q1, strict=True):
                    knots.setdefault(x, []).append(y)
                xs = sorted(knots)
                ys = [np.mean(knots[x]) for x in xs]
                for i in cells:
                    out[i, f] = np.interp(H[i, f], xs, ys)
    return out, clusters


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"refine_knn": False},
        {"center": True, "n_neighbors": 7},
        {"use_dims": [0, 2, 3], "min_cells": 15, "quantiles": 10},
    ],
)
def test_core_matches_slow_reference(options):
    H, batches, _ = synthetic_factors(sizes=(90, 60, 40), seed=1, distort=(1, 2))
    codes = pd.factorize(batches, sort=True)[0]
    kwargs = {
        "quantiles": 20,
        "min_cells": 8,
        "n_neighbors": 5,
        "use_dims": None,
        "center": False,
        "refine_knn": True,
        **options,
    }
    expected, expected_clusters = slow_quantile_norm(H, batches, "b0", **kwargs)
    result = quantile_norm(H, codes, 0, max_sample=1000, **kwargs)
    np.testing.assert_array_equal(result.clusters, expected_clusters)
    np.testing.assert_allclose(result.H_norm, expected, rtol=1e-12, atol=1e-12)


def test_shifted_and_scaled_batch_is_aligned_to_reference():
    H, batches, types = synthetic_factors(sizes=(600, 400), seed=2)
    adata = make_adata(H, batches)
    si.pp.quantile_norm(adata, batch_key="batch", min_cells=10)
    assert adata.uns["inmf_qn"]["params"]["reference"] == "b0"  # the largest batch
    out = adata.obsm["X_inmf_qn"]
    clusters = adata.obs["inmf_qn_clusters"].astype(int).to_numpy()
    assert np.mean(clusters == types) > 0.95  # max-factor clusters recover the planted types
    probs = np.linspace(0.05, 0.95, 19)
    for c in range(4):
        ref = (batches == "b0") & (clusters == c)
        other = (batches == "b1") & (clusters == c)
        for f in range(4):
            q_ref = np.quantile(H[ref, f], probs)
            spread = q_ref[-1] - q_ref[0]
            before = np.abs(np.quantile(H[other, f], probs) - q_ref).max()
            after = np.abs(np.quantile(out[other, f], probs) - q_ref).max()
            assert after < 0.1 * spread, (c, f)  # resolution of 50 quantiles on ~100 cells
            assert before > 5 * after, (c, f)
    # the reference is mapped onto itself: unchanged when no subsampling happens
    np.testing.assert_allclose(out[batches == "b0"], H[batches == "b0"], rtol=1e-12)


def test_max_factor_clusters_and_empty_cells():
    H = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 0.0], [3.0, 1.0, 1.0], [0.5, 0.5, 4.0]])
    labels = max_factor_clusters(H)
    assert labels[0] == -1  # no positive loading
    rms = np.sqrt((H**2).sum(0) / 3)
    np.testing.assert_array_equal(labels[1:], np.argmax(H[1:] / rms, axis=1))
    assert max_factor_clusters(H, np.array([0, 1]))[3] in (0, 1)


def test_knn_vote_ties_go_to_smaller_label_and_is_simultaneous():
    # four points on a line, each voting with its 2 nearest (itself + one neighbour)
    H = np.array([[0.0], [1.0], [10.0], [11.5]])
    labels = np.array([3, 1, 2, -1])
    np.testing.assert_array_equal(knn_vote(H, labels, 2), [1, 1, -1, -1])
    # every cell votes with the original labels, whatever the order of the cells
    rng = np.random.default_rng(0)
    X = rng.random((80, 3))
    lab = rng.integers(-1, 4, 80)
    perm = rng.permutation(80)
    np.testing.assert_array_equal(knn_vote(X, lab, 6)[perm], knn_vote(X[perm], lab[perm], 6))


def test_same_seed_same_result_with_subsampling():
    H, batches, _ = synthetic_factors(sizes=(300, 200), seed=3)
    adata = make_adata(H, batches)
    kwargs = {"batch_key": "batch", "max_sample": 25, "min_cells": 10, "copy": True}
    runs = [si.pp.quantile_norm(adata, random_state=5, **kwargs) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].obsm["X_inmf_qn"], runs[1].obsm["X_inmf_qn"])
    other = si.pp.quantile_norm(adata, random_state=6, **kwargs)
    assert not np.allclose(other.obsm["X_inmf_qn"], runs[0].obsm["X_inmf_qn"])
    rng_run = si.pp.quantile_norm(adata, random_state=np.random.default_rng(5), **kwargs)
    np.testing.assert_array_equal(rng_run.obsm["X_inmf_qn"], runs[0].obsm["X_inmf_qn"])


def test_slots_params_copy_and_custom_key():
    H, batches, _ = synthetic_factors(sizes=(120, 200), seed=4, distort=(0,))
    adata = make_adata(H, batches)
    out = si.pp.quantile_norm(adata, batch_key="batch", reference="b0", key_added="qn", copy=True)
    assert isinstance(out, ad.AnnData) and "X_qn" not in adata.obsm and "qn" not in adata.uns
    assert out.obsm["X_qn"].shape == H.shape
    assert isinstance(out.obs["qn_clusters"].dtype, pd.CategoricalDtype)
    params = out.uns["qn"]["params"]
    assert params["reference"] == "b0" and params["use_rep"] == "X_inmf"
    assert params["quantiles"] == 50 and params["random_state"] == 0
    assert "scintegrate_version" in params
    assert list(out.uns["qn"]["batches"]) == ["b0", "b1"]
    np.testing.assert_array_equal(out.obsm["X_inmf"], H)  # the input factors are kept
    assert si.pp.quantile_norm(adata, batch_key="batch") is None
    assert {"X_inmf_qn"} <= set(adata.obsm) and "inmf_qn_clusters" in adata.obs
    # reference b1 (the default, largest) maps itself to itself
    b1 = batches == "b1"
    np.testing.assert_allclose(adata.obsm["X_inmf_qn"][b1], H[b1], rtol=1e-12)


def test_unaligned_cells_are_counted_and_kept():
    H, batches, _ = synthetic_factors(sizes=(200, 30), seed=5)
    H[:3] = 0.0  # cells without loadings: cluster -1, never aligned
    adata = make_adata(H, batches)
    si.pp.quantile_norm(adata, batch_key="batch", min_cells=20, refine_knn=False)
    clusters = adata.obs["inmf_qn_clusters"]
    assert "-1" in clusters.cat.categories and (clusters.iloc[:3] == "-1").all()
    n_unaligned = adata.uns["inmf_qn"]["n_unaligned"]
    assert n_unaligned[1] == 30  # ~8 cells per cluster in b1: all below min_cells
    b1 = batches == "b1"
    np.testing.assert_array_equal(adata.obsm["X_inmf_qn"][b1], H[b1])
    np.testing.assert_array_equal(adata.obsm["X_inmf_qn"][:3], 0.0)


def test_round_trip_h5ad(tmp_path):
    H, batches, _ = synthetic_factors(sizes=(100, 80), seed=6)
    adata = make_adata(H, batches)
    si.pp.quantile_norm(adata, batch_key="batch", use_dims=[0, 1, 2], min_cells=5)
    path = tmp_path / "qn.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.obsm["X_inmf_qn"], adata.obsm["X_inmf_qn"])
    pd.testing.assert_series_equal(back.obs["inmf_qn_clusters"], adata.obs["inmf_qn_clusters"])
    assert back.uns["inmf_qn"]["params"].keys() == adata.uns["inmf_qn"]["params"].keys()
    np.testing.assert_array_equal(back.uns["inmf_qn"]["params"]["use_dims"], [0, 1, 2])


def test_backed_adata_keeps_results_in_memory_and_says_so(tmp_path, caplog):
    H, batches, _ = synthetic_factors(sizes=(60, 50), seed=8)
    path = tmp_path / "qn.h5ad"
    make_adata(H, batches).write_h5ad(path)
    before = path.read_bytes()
    adata = ad.read_h5ad(path, backed="r")
    with pytest.raises(ValueError, match="copy=True cannot copy an AnnData opened in backed"):
        si.pp.quantile_norm(adata, batch_key="batch", min_cells=5, copy=True)
    with caplog.at_level("WARNING", logger="scintegrate"):
        si.pp.quantile_norm(adata, batch_key="batch", min_cells=5)
    assert "the file is not changed" in caplog.text and "write_h5ad" in caplog.text
    in_memory = make_adata(H, batches)
    si.pp.quantile_norm(in_memory, batch_key="batch", min_cells=5)
    np.testing.assert_array_equal(adata.obsm["X_inmf_qn"], in_memory.obsm["X_inmf_qn"])
    adata.file.close()
    assert path.read_bytes() == before


def test_second_call_replaces_the_first_calls_slots():
    H, batches, _ = synthetic_factors(sizes=(60, 50), seed=9)
    adata = make_adata(H, batches)
    si.pp.quantile_norm(adata, batch_key="batch", min_cells=5, key_added="qn")
    assert set(adata.uns["qn"]["slots"]) == {"obsm:X_qn", "obs:qn_clusters"}
    first = adata.obsm["X_qn"].copy()
    si.pp.quantile_norm(adata, batch_key="batch", min_cells=5, key_added="qn", reference="b1")
    assert adata.uns["qn"]["params"]["reference"] == "b1"
    assert not np.array_equal(adata.obsm["X_qn"], first)


# ------------------------------------------------------------------------------- bad input
def _single_batch(adata):
    adata.obs["batch"] = "only"
    return adata


def _set_rep(value):
    def mutate(adata):
        H = adata.obsm["X_inmf"].copy()
        H[0, 0] = value
        adata.obsm["X_inmf"] = H
        return adata

    return mutate


def _object_rep(adata):
    adata.obsm["X_inmf"] = adata.obsm["X_inmf"].astype(object)
    return adata


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (lambda a: a, {"use_rep": "X_nmf"}, "use_rep='X_nmf' is not in adata.obsm"),
        (lambda a: a, {"batch_key": "sample"}, "batch_key='sample' is not a column"),
        (_single_batch, {}, "single batch"),
        (_set_rep(-1.0), {}, "negative values"),
        (_set_rep(np.nan), {}, "NaN or infinite"),
        (lambda a: a, {"reference": "b7"}, "reference='b7' is not a batch"),
        (lambda a: a, {"use_dims": [0, 4]}, "use_dims must be distinct"),
        (lambda a: a, {"use_dims": [1, 1]}, "use_dims must be distinct"),
        (lambda a: a, {"quantiles": 0}, "quantiles must be an integer"),
        (lambda a: a, {"max_sample": 1}, "max_sample must be an integer >= 2"),
        (lambda a: a, {"n_neighbors": 0}, "n_neighbors must be"),
        (lambda a: a, {"refine_knn": "yes"}, "refine_knn must be True or False"),
        (_object_rep, {}, "has dtype object; expected real numbers"),
        (lambda a: a, {"key_added": "a/b"}, "without '/'"),
    ],
)
def test_bad_input_raises_clear_error(mutate, kwargs, message):
    H, batches, _ = synthetic_factors(sizes=(40, 30), seed=7)
    adata = mutate(make_adata(H, batches))
    kwargs = {"batch_key": "batch", **kwargs}
    with pytest.raises(ValueError, match=message):
        si.pp.quantile_norm(adata, **kwargs)
    assert "X_inmf_qn" not in adata.obsm and "inmf_qn" not in adata.uns


def test_real_data_pipeline_aligns_a_downsampled_batch(cortex_small):
    """liger_preprocess -> tl.inmf -> quantile_norm on real cells split into two datasets, one
    thinned to 30% of its counts (a capture-efficiency batch effect). Measured on 2026-11-23
    (3 cell subsets): alignment 0.40-0.42 on X_inmf, 0.95-0.98 after quantile normalisation."""
    rng = np.random.default_rng(1)
    thinned = np.arange(cortex_small.n_obs) % 2 == 1
    X = cortex_small.X.tocsr().astype(np.float32)
    X[thinned] = X[thinned].multiply(rng.random(X[thinned].shape) < 0.3)
    adata = ad.AnnData(X.tocsr(), obs=cortex_small.obs.copy(), var=cortex_small.var)
    adata.obs["ds"] = np.where(thinned, "B", "A")
    adata = adata[np.asarray(adata.X.sum(1)).ravel() > 0].copy()
    si.pp.liger_preprocess(adata, batch_key="ds")
    si.tl.inmf(adata, 8, batch_key="ds", max_iter=15)
    si.pp.quantile_norm(adata, batch_key="ds", min_cells=10)
    before = si.metrics.alignment_score(adata, batches="ds", use_rep="X_inmf")
    after = si.metrics.alignment_score(adata, batches="ds", use_rep="X_inmf_qn")
    assert before < 0.6 and after > 0.85

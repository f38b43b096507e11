"""pp.centroid_align and its array core: a slow reference, a hand computation, planted batch
effects, slots, determinism, bad input."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scintegrate as si
from scintegrate._core.centroid_align import centroid_align, soft_clusters


def planted(sizes=(150, 100), k=3, seed=0):
    """Cells of k types loading mostly on their own factor; batch 1 has every factor scaled
    and shifted, so its type centroids sit away from batch 0's."""
    rng = np.random.default_rng(seed)
    blocks, batches, types = [], [], []
    for b, n in enumerate(sizes):
        t = rng.integers(0, k, n)
        H = rng.gamma(2.0, 0.05, (n, k))
        H[np.arange(n), t] += rng.gamma(6.0, 0.3, n)
        if b == 1:
            H = H * np.linspace(2.5, 0.6, k) + 0.3
        blocks.append(H)
        batches += [f"b{b}"] * n
        types.append(t)
    return np.vstack(blocks), np.asarray(batches), np.concatenate(types)


def make_adata(H, batches):
    obs = pd.DataFrame({"batch": pd.Categorical(batches)}, index=[f"c{i}" for i in range(len(H))])
    return ad.AnnData(np.ones((len(H), 2), dtype=np.float32), obs=obs, obsm={"X_inmf": H})


def slow_centroid_align(H, batches, lambdas, reference=None):
    """rliger's R + C++ (moe_correct_ridge_cpp) transcribed literally: N x N diagonal weight
    matrices, an explicit inverse per cluster, dims x cells orientation."""
    names = list(pd.unique(batches))
    N = len(H)
    Z = H - H.mean(0)
    Z = (Z / np.sqrt((Z**2).sum(0) / (N - 1))).T  # D x N
    R = (H / H.sum(1, keepdims=True)).T  # K x N
    rows = [b for b in names if b != reference]
    Phi = np.array([[1.0 if batches[i] == b else 0.0 for i in range(N)] for b in rows])
    Phi_moe = np.vstack([np.ones(N), Phi])
    lam = np.diag([0.0] + [lambdas[names.index(b)] for b in rows])
    Z_corr = Z.copy()
    for k in range(R.shape[0]):
        Phi_Rk = Phi_moe @ np.diag(R[k])
        inv_cov = np.linalg.inv(Phi_Rk @ Phi_moe.T + lam)
        W = inv_cov @ (Phi_Rk @ Z.T)
        W[0] = 0  # the intercept is kept
        Z_corr -= W.T @ Phi_Rk
    return Z_corr.T


@pytest.mark.parametrize(
    ("lambdas", "reference"), [((1.0, 1.0, 1.0), None), ((0.5, 3.0, 10.0), None), ((1, 0, 0), "a")]
)
def test_core_matches_slow_reference(lambdas, reference):
    rng = np.random.default_rng(3)
    H = rng.gamma(1.5, 0.2, (40, 4))
    batches = rng.choice(["a", "b", "c"], 40)
    codes = pd.factorize(batches)[0]
    ref = None if reference is None else int(codes[batches == reference][0])
    result = centroid_align(H, codes, lambda_=np.asarray(lambdas, float), reference=ref)
    expected = slow_centroid_align(H, batches, dict(enumerate(lambdas)) | {}, reference)
    np.testing.assert_allclose(result.Z, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(result.clusters, H.argmax(1))


def test_hand_computed_single_factor_with_reference():
    # one factor: every cell is fully in cluster 0 and the regression is on batch means alone;
    # with lambda = 0 and a reference, batch 1 moves by exactly the difference of the means
    H = np.array([[1.0], [2.0], [3.0], [6.0], [8.0]])
    codes = np.array([0, 0, 0, 1, 1])
    z = (H[:, 0] - H.mean()) / H[:, 0].std(ddof=1)
    expected = z.copy()
    expected[3:] -= z[3:].mean() - z[:3].mean()
    result = centroid_align(H, codes, lambda_=0.0, reference=0)
    np.testing.assert_allclose(result.Z[:, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(result.offsets[1, 0, 0], z[3:].mean() - z[:3].mean())
    assert result.offsets[0].sum() == 0
    # with a penalty the move shrinks: offset = n1 (m1 - m0) n0 / (n0 n1 + lambda N) by hand
    n0, n1, lam = 3, 2, 4.0
    shrunk = centroid_align(H, codes, lambda_=lam, reference=0).offsets[1, 0, 0]
    m0, m1 = z[:3].mean(), z[3:].mean()
    np.testing.assert_allclose(shrunk, n0 * n1 * (m1 - m0) / (n0 * n1 + lam * (n0 + n1)))


def test_soft_clusters_rows_sum_to_one_and_refuse_negative_weights():
    H = np.array([[1.0, 3.0], [0.0, 0.0], [2.0, 2.0]])
    R = soft_clusters(H)
    np.testing.assert_allclose(R, [[0.25, 0.75], [0, 0], [0.5, 0.5]])
    assert (soft_clusters(H, center=True, shift=True) >= 0).all()
    with pytest.raises(ValueError, match="shift=True"):
        soft_clusters(H, center=True)
    # a cell without loadings keeps its place and gets cluster -1
    result = centroid_align(H, np.array([0, 1, 1]), reference=0)
    assert result.clusters.tolist() == [1, -1, 0]


def test_planted_batch_effect_is_removed():
    H, batches, types = planted()
    adata = make_adata(H, batches)
    before = si.metrics.alignment_score(adata, batches="batch", use_rep="X_inmf")
    si.pp.centroid_align(adata, batch_key="batch")
    Z = adata.obsm["X_inmf_ca"]
    clusters = adata.obs["inmf_ca_clusters"].astype(int).to_numpy()
    assert np.mean(clusters == types) > 0.95
    Z0 = (H - H.mean(0)) / H.std(0, ddof=1)  # the embedding before the correction
    for t in range(3):
        gap = [
            Z[(batches == "b1") & (types == t)].mean(0)
            - Z[(batches == "b0") & (types == t)].mean(0)
            for Z in (Z0, Z)
        ]
        # one soft step: each cell moves by its cluster weights (about 0.8 on its own type
        # here), so the gaps shrink to 0.3-0.55 of what they were, not to 0
        assert np.linalg.norm(gap[1]) < 0.6 * np.linalg.norm(gap[0]), t
    after = si.metrics.alignment_score(adata, batches="batch", use_rep="X_inmf_ca")
    assert after > before + 0.25, (before, after)  # 0.19 -> 0.52
    # a reference stays where it is; the other batch moves onto it
    si.pp.centroid_align(adata, batch_key="batch", reference="b0", key_added="ref")
    ref = batches == "b0"
    np.testing.assert_allclose(adata.obsm["X_ref"][ref], Z0[ref], rtol=1e-12, atol=1e-12)
    assert adata.uns["ref"]["params"]["reference"] == "b0"
    assert not adata.uns["ref"]["offsets"][0].any() and adata.uns["ref"]["offsets"][1].any()


def test_slots_params_copy_and_round_trip(tmp_path):
    H, batches, _ = planted(sizes=(60, 40))
    adata = make_adata(H, batches)
    X = adata.X.copy()
    out = si.pp.centroid_align(adata, batch_key="batch", copy=True, lambda_=[1.0, 2.0])
    assert "X_inmf_ca" not in adata.obsm and "inmf_ca" not in adata.uns
    assert out.obsm["X_inmf_ca"].shape == (100, 3)
    assert out.obs["inmf_ca_clusters"].dtype == "category"
    params = out.uns["inmf_ca"]["params"]
    assert params["batch_key"] == "batch" and list(params["lambda_"]) == [1.0, 2.0]
    assert "reference" not in params  # None: every batch moves
    assert list(out.uns["inmf_ca"]["batches"]) == ["b0", "b1"]
    assert out.uns["inmf_ca"]["offsets"].shape == (2, 3, 3)
    assert si.pp.centroid_align(adata, batch_key="batch", use_dims=[0, 2], key_added="ca2") is None
    assert adata.obsm["X_ca2"].shape == (100, 2)
    assert set(adata.obs["ca2_clusters"].cat.categories) <= {"0", "2"}
    np.testing.assert_array_equal(adata.X, X)
    path = tmp_path / "ca.h5ad"
    out.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.obsm["X_inmf_ca"], out.obsm["X_inmf_ca"])
    np.testing.assert_array_equal(back.uns["inmf_ca"]["offsets"], out.uns["inmf_ca"]["offsets"])


def test_deterministic_and_independent_of_cell_order():
    H, batches, _ = planted(sizes=(50, 30))
    first = centroid_align(H, pd.factorize(batches)[0])
    again = centroid_align(H, pd.factorize(batches)[0])
    np.testing.assert_array_equal(first.Z, again.Z)
    perm = np.random.default_rng(0).permutation(len(H))
    shuffled = centroid_align(H[perm], pd.factorize(batches)[0][perm])
    np.testing.assert_allclose(shuffled.Z, first.Z[perm], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"use_rep": "X_nope"}, "use_rep='X_nope' is not in adata.obsm"),
        ({"batch_key": "nope"}, "batch_key='nope' is not a column"),
        ({"reference": "b9"}, "reference='b9' is not a batch"),
        ({"lambda_": -1}, "lambda_ must be a finite number >= 0"),
        ({"lambda_": [1.0, 2.0, 3.0]}, "lambda_ has 3 values but there are 2 batches"),
        ({"use_dims": [0, 7]}, r"use_dims must be distinct 0-based factor indices in \[0, 2\]"),
        ({"center_cluster": True}, "pass shift=True"),
        ({"scale_emb": "yes"}, "scale_emb must be True or False"),
        ({"key_added": "a/b"}, "key_added must be a non-empty string"),
    ],
)
def test_bad_input(kwargs, message):
    H, batches, _ = planted(sizes=(30, 20))
    adata = make_adata(H, batches)
    with pytest.raises(ValueError, match=message):
        si.pp.centroid_align(adata, **{"batch_key": "batch", **kwargs})
    assert "inmf_ca" not in adata.uns and "inmf_ca_clusters" not in adata.obs


def test_bad_factors_and_one_batch():
    H, batches, _ = planted(sizes=(30, 20))
    adata = make_adata(-H, batches)
    with pytest.raises(ValueError, match="negative values"):
        si.pp.centroid_align(adata, batch_key="batch")
    adata = make_adata(H, np.full(len(H), "only"))
    with pytest.raises(ValueError, match="single batch"):
        si.pp.centroid_align(adata, batch_key="batch")

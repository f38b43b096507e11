"""LIGER integration metrics: alignment score, purity and agreement."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scintegrate as si
from scintegrate._utils._validation import batch_codes
from scintegrate.metrics._integration import batch_nmf_embeddings, jaccard_overlap


def brute_force_alignment(embedding, batches, k):
    """Every cell of every batch (all batches the same size, so downsampling keeps them all)."""
    n = len(embedding)
    dist = np.sqrt(((embedding[:, None, :] - embedding[None, :, :]) ** 2).sum(-1))
    n_batches = len(set(batches))
    scores = []
    for i in range(n):
        order = [j for j in np.argsort(dist[i], kind="stable") if j != i][:k]
        same = sum(batches[j] == batches[i] for j in order)
        scores.append(1 - (same - k / n_batches) / (k - k / n_batches))
    return float(np.mean(scores))


# ------------------------------------------------------------------------------- alignment
def test_alignment_mixed_vs_separated():
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(900, 4))
    batches = rng.permutation(np.repeat(["a", "b", "c"], 300))
    mixed = si.metrics.alignment_score(embedding, batches=batches)
    assert mixed == pytest.approx(1.0, abs=0.08)
    offsets = {"a": 0.0, "b": 100.0, "c": 200.0}
    separated = embedding + np.array([offsets[b] for b in batches])[:, None]
    assert si.metrics.alignment_score(separated, batches=batches) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n_neighbors", [None, 3, 17])
def test_alignment_matches_brute_force(n_neighbors):
    rng = np.random.default_rng(1)
    embedding = rng.normal(size=(90, 3))
    embedding[:30] += 0.8  # partly separated batch
    batches = np.repeat(np.array(["x", "y", "z"]), 30)
    k = 10 if n_neighbors is None else n_neighbors  # default: max(floor(0.9), 10)
    expected = brute_force_alignment(embedding, batches, k)
    got = si.metrics.alignment_score(embedding, batches=batches, n_neighbors=n_neighbors)
    assert got == pytest.approx(expected, rel=1e-12)
    assert 0.2 < got < 1.0


def test_alignment_downsamples_to_smallest_batch():
    rng = np.random.default_rng(2)
    embedding = rng.normal(size=(1300, 2))
    batches = np.array(["big"] * 1200 + ["small"] * 100)
    embedding[batches == "small"] += 0.5
    got = si.metrics.alignment_score(embedding, batches=batches, random_state=3)
    # the same downsampling by hand, then the brute force on the 200 sampled cells;
    # default k = min(max(floor(0.01 * 1300), 10), 199) = 13
    codes, _ = batch_codes(batches)
    sample_rng = np.random.default_rng(3)
    sampled = np.concatenate(
        [sample_rng.choice(np.flatnonzero(codes == b), 100, replace=False) for b in range(2)]
    )
    expected = brute_force_alignment(embedding[sampled], batches[sampled], 13)
    assert got == pytest.approx(expected, rel=1e-12)
    assert got == si.metrics.alignment_score(embedding, batches=batches, random_state=3)
    assert got != si.metrics.alignment_score(embedding, batches=batches, random_state=4)


def test_alignment_accepts_anndata():
    rng = np.random.default_rng(4)
    embedding = rng.normal(size=(120, 3))
    batches = np.tile(["p", "q"], 60)
    adata = ad.AnnData(
        np.zeros((120, 2), dtype=np.float32),
        obs=pd.DataFrame({"batch": pd.Categorical(batches)}, index=[str(i) for i in range(120)]),
        obsm={"X_inmf_qn": embedding},
    )
    from_adata = si.metrics.alignment_score(adata, batches="batch", use_rep="X_inmf_qn")
    assert from_adata == si.metrics.alignment_score(embedding, batches=batches)


@pytest.mark.parametrize(
    ("embedding", "batches", "kwargs", "message"),
    [
        (np.ones((10, 2)), ["a"] * 10, {}, "single batch"),
        (np.ones((10, 2)), ["a", "b"] * 5, {"n_neighbors": 10}, "n_neighbors=10 is too large"),
        (np.ones((10, 2)), ["a", "b"] * 5, {"n_neighbors": 0}, "n_neighbors must be"),
        (np.full((10, 2), np.nan), ["a", "b"] * 5, {}, "NaN"),
        (np.ones((10, 2)), ["a", "b"] * 4, {}, "batches has 8 entries"),
        (np.ones((10, 2)), "batch", {}, "needs an AnnData"),
        (np.ones((10, 2)), ["a", None] * 5, {}, "missing values"),
    ],
)
def test_alignment_bad_input(embedding, batches, kwargs, message):
    with pytest.raises(ValueError, match=message):
        si.metrics.alignment_score(embedding, batches=batches, **kwargs)


def test_alignment_refuses_batches_of_one_cell():
    # two cells used to score 2.0: with one cell per batch no neighbour can be of its own batch
    with pytest.raises(ValueError, match="'a' has a single cell"):
        si.metrics.alignment_score(np.array([[0.0], [1.0]]), batches=["a", "b"])
    with pytest.raises(ValueError, match="'c' has a single cell"):
        si.metrics.alignment_score(np.zeros((5, 2)), batches=["a", "a", "b", "b", "c"])


def test_alignment_caps_k_below_the_smallest_batch(caplog):
    rng = np.random.default_rng(5)
    batches = np.array(["big"] * 100 + ["small"] * 6)
    embedding = rng.normal(size=(106, 2))
    embedding[batches == "small"] += 100.0
    # separated batches score 0: k is lowered from 10 to 5, the neighbours a cell of the
    # smallest batch can have in its own batch (with k = 10 they scored 1.0, "mixed")
    with caplog.at_level("WARNING", logger="scintegrate"):
        got = si.metrics.alignment_score(embedding, batches=batches)
    assert got == 0.0
    assert "uses 5 neighbours instead of 10" in caplog.text
    assert si.metrics.alignment_score(embedding, batches=batches, n_neighbors=5) == 0.0
    with pytest.raises(ValueError, match=r"n_neighbors=6 is too large.*<= 5"):
        si.metrics.alignment_score(embedding, batches=batches, n_neighbors=6)


def test_alignment_anndata_needs_use_rep(cortex_small):
    with pytest.raises(ValueError, match="Pass use_rep"):
        si.metrics.alignment_score(cortex_small, batches="library")
    with pytest.raises(ValueError, match=r"not in adata\.obsm"):
        si.metrics.alignment_score(cortex_small, batches="library", use_rep="X_inmf_qn")


# ---------------------------------------------------------------------------------- purity
def test_purity_hand_computed():
    true = ["a", "a", "a", "b", "b", "c"]
    pred = [1, 1, 2, 2, 2, 3]
    # cluster 1: 2 a; cluster 2: 1 a + 2 b -> 2; cluster 3: 1 c -> 1
    assert si.metrics.purity(true, pred) == pytest.approx(5 / 6)
    assert si.metrics.purity(true, true) == 1.0
    assert si.metrics.purity(true, [0] * 6) == pytest.approx(3 / 6)
    assert si.metrics.purity(true, list(range(6))) == 1.0  # singletons are trivially pure
    assert si.metrics.purity(["x", None, None], [0, 0, 0]) == pytest.approx(2 / 3)


def test_purity_with_anndata_columns(cortex_small):
    cortex_small.obs["clusters"] = pd.Categorical(cortex_small.obs["cell_type"].astype(str))
    assert si.metrics.purity("cell_type", "clusters", adata=cortex_small) == 1.0
    mixed = si.metrics.purity("cell_type", "library", adata=cortex_small)
    by_hand = pd.crosstab(cortex_small.obs["cell_type"], cortex_small.obs["library"])
    assert mixed == pytest.approx(by_hand.max(axis=0).sum() / cortex_small.n_obs)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("a", [1]), {}, "pass adata"),
        ((["a", "b"], [1]), {}, "different lengths"),
        (("cell_type", "nope"), {"adata": "cortex"}, "labels_pred='nope' is not a column"),
        (([], []), {}, "at least one cell"),
    ],
)
def test_purity_bad_input(cortex_small, args, kwargs, message):
    if kwargs.get("adata") == "cortex":
        kwargs = {"adata": cortex_small}
    with pytest.raises(ValueError, match=message):
        si.metrics.purity(*args, **kwargs)


# ------------------------------------------------------------------------------- agreement
def test_jaccard_overlap_matches_sets():
    rng = np.random.default_rng(5)
    first = np.array([rng.choice(50, 6, replace=False) for _ in range(40)])
    second = np.array([rng.choice(50, 6, replace=False) for _ in range(40)])
    expected = [
        len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(first, second, strict=True)
    ]
    np.testing.assert_allclose(jaccard_overlap(first, second), expected)
    np.testing.assert_array_equal(jaccard_overlap(first, first), 1.0)


@pytest.fixture
def liger_small(cortex_small):
    """Four libraries (~130 cells) of the real data, LIGER-preprocessed."""
    keep = cortex_small.obs["library"].isin(["09A", "09B", "09C", "09D"]).to_numpy()
    adata = cortex_small[keep].copy()
    si.pp.liger_preprocess(adata, batch_key="library")
    return adata


def test_agreement_is_one_for_the_per_batch_nmf_embedding(liger_small):
    adata = liger_small
    mask = adata.var["liger_highly_variable"].to_numpy()
    X = adata.layers["liger_scaled"][:, mask]
    codes, names = batch_codes(adata.obs["library"])
    per_batch = batch_nmf_embeddings(X, codes, names, 8, np.random.default_rng(0))
    embedding = np.zeros((adata.n_obs, 8))
    for b, H in enumerate(per_batch):
        embedding[codes == b] = H
    adata.obsm["X_perfect"] = embedding
    kwargs = {"n_components": 8, "n_neighbors": 5, "random_state": 0}
    score = si.metrics.agreement(
        adata,
        batches="library",
        use_rep="X_perfect",
        layer="liger_scaled",
        mask_var="liger_highly_variable",
        **kwargs,
    )
    assert score == 1.0
    # array input gives the same
    same = si.metrics.agreement(embedding, batches=adata.obs["library"], X=X, **kwargs)
    assert same == 1.0
    # a random embedding keeps few neighbourhoods (chance level is about k / n_batch ~ 0.1)
    noise = np.random.default_rng(1).random(embedding.shape)
    low = si.metrics.agreement(noise, batches=adata.obs["library"], X=X, **kwargs)
    assert low < 0.2
    # a mildly perturbed embedding keeps part of them
    perturbed = embedding * np.exp(0.3 * np.random.default_rng(2).normal(size=embedding.shape))
    mid = si.metrics.agreement(perturbed, batches=adata.obs["library"], X=X, **kwargs)
    assert low < mid < 1.0


def test_agreement_caps_neighbours_and_factors_for_small_batches(liger_small, caplog):
    adata = liger_small
    X = adata.layers["liger_scaled"]
    embedding = np.random.default_rng(3).random((adata.n_obs, 4))
    with caplog.at_level("WARNING", logger="scintegrate"):
        score = si.metrics.agreement(
            embedding, batches=adata.obs["library"], X=X, n_components=50, n_neighbors=60
        )
    assert 0 < score <= 1
    assert "neighbours there" in caplog.text and "instead of 50 factors" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"X": None}, "Pass X"),
        ({"mask_var": "liger_highly_variable"}, "is not a column of adata.var"),
        ({"mask_var": np.ones(3, dtype=bool)}, "boolean mask of length 300"),
        ({"X": "negative"}, "negative values"),
        ({"X": "short"}, "one row per cell"),
        ({"n_components": 0}, "n_components must be"),
        ({"batches": np.zeros(3)}, "batches has 3 entries"),
    ],
)
def test_agreement_bad_input(liger_small, kwargs, message):
    X = liger_small.layers["liger_scaled"]
    kwargs = {"X": X, "batches": liger_small.obs["library"].to_numpy(), **kwargs}
    if isinstance(kwargs["X"], str):
        kwargs["X"] = -X if kwargs["X"] == "negative" else X[:10]
    with pytest.raises(ValueError, match=message):
        si.metrics.agreement(np.ones((liger_small.n_obs, 3)), **kwargs)

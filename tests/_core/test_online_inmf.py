"""The online iNMF model state: resume from a saved state, fold in new datasets, project new
cells. (The model file is tested with OnlineINMFModel in tests/tl/test_online_inmf.py.)"""

from __future__ import annotations

import numpy as np
import pytest

import scintegrate as si
from scintegrate._core._sparse import as_csr
from scintegrate._core.online_inmf import OnlineINMF, fit_online_inmf

K = 6


@pytest.fixture(scope="module")
def libraries(cortex):
    """Four SNARE-seq libraries, LIGER-preprocessed together, as four CSR datasets."""
    names = ["09A", "09B", "09C", "09D"]
    adata = cortex[cortex.obs["library"].isin(names)].copy()
    si.pp.liger_preprocess(adata, batch_key="library")
    genes = adata.var["liger_highly_variable"].to_numpy()
    X = adata.layers["liger_scaled"][:, genes]
    library = adata.obs["library"].to_numpy()
    return [as_csr(X[library == name], dtype=np.float64, canonical=True) for name in names]


def new_model(seed=0):
    return OnlineINMF(K, batch_size=600, rng=np.random.default_rng(seed))


def test_wrapper_and_model_agree(libraries):
    data = libraries[:2]
    result = fit_online_inmf(data, K, batch_size=600, max_epochs=3, rng=np.random.default_rng(0))
    model = new_model()
    model.train(data, model.add_datasets(data, ["a", "b"]), 3)
    np.testing.assert_array_equal(result.W, model.W)
    np.testing.assert_array_equal(result.H[1], model.solve(data[1], 1)[0])


def test_resume_from_state_equals_uninterrupted_run(libraries):
    data = libraries[:2]
    straight = new_model()
    straight.train(data, straight.add_datasets(data, ["a", "b"]), 4)

    first = new_model()
    active = first.add_datasets(data, ["a", "b"])
    first.train(data, active, 2)
    state = first.get_state()
    first.train(data, active, 1)  # the state is a copy: training on does not change it
    resumed = OnlineINMF.from_state(state)
    resumed.train(data, active, 2)

    np.testing.assert_array_equal(resumed.W, straight.W)
    resumed_state = resumed.V + resumed.A + resumed.B
    for ours, ref in zip(resumed_state, straight.V + straight.A + straight.B, strict=True):
        np.testing.assert_array_equal(ours, ref)
    np.testing.assert_allclose(resumed.history["objective"], straight.history["objective"])
    assert resumed.epochs == straight.epochs == [4, 4]


def test_new_dataset_refines_w_and_keeps_old_statistics(libraries):
    model = new_model()
    model.train(libraries[:2], model.add_datasets(libraries[:2], ["a", "b"]), 3)
    old_V = [V.copy() for V in model.V]
    old_A = [A.copy() for A in model.A]
    n_steps = len(model.history["delta_W"])
    new = model.add_datasets(libraries[2:3], ["c"])
    model.train(libraries[2:3], new, 1)
    assert model.names == ["a", "b", "c"]
    for before, after in zip(old_V + old_A, model.V[:2] + model.A[:2], strict=True):
        np.testing.assert_array_equal(before, after)  # old datasets untouched
    assert np.linalg.norm(model.A[2]) > 0
    delta = np.asarray(model.history["delta_W"][n_steps:])
    assert len(delta) >= 1 and np.all(delta > 0)
    H, value = model.solve(libraries[2], 2)
    assert H.shape == (libraries[2].shape[0], K) and value > 0


def test_projection_onto_w_leaves_the_model_unchanged(libraries):
    model = new_model()
    model.train(libraries[:2], model.add_datasets(libraries[:2], ["a", "b"]), 2)
    W = model.W.copy()
    H, _ = model.solve(libraries[3])
    assert H.shape == (libraries[3].shape[0], K)
    assert (H >= 0).all() and (H.sum(1) > 0).mean() > 0.95
    np.testing.assert_array_equal(model.W, W)


def test_inconsistent_state_and_bad_data(libraries):
    model = new_model()
    model.train(libraries[:1], model.add_datasets(libraries[:1], ["a"]), 1)
    state = model.get_state()
    with pytest.raises(ValueError, match="do not match"):
        OnlineINMF.from_state({**state, "names": ["a", "b"]})
    with pytest.raises(ValueError, match="do not match"):
        OnlineINMF.from_state({**state, "B": state["B"][:, :10]})
    with pytest.raises(KeyError):
        OnlineINMF.from_state({k: v for k, v in state.items() if k != "A_old"})
    with pytest.raises(ValueError, match="genes"):
        model.add_datasets([libraries[1][:, :10]], ["b"])
    with pytest.raises(ValueError, match="already part"):
        model.add_datasets(libraries[1:2], ["a"])

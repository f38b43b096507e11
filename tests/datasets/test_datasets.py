"""Bundled data and the simulators."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import scintegrate as si


def test_bundled_dataset(cortex):
    assert cortex.shape == (10309, 1677)
    assert sp.issparse(cortex.X)
    data = cortex.X.data
    assert (data >= 0).all() and np.array_equal(data, np.round(data))
    assert cortex.obs["cell_type"].nunique() == 15
    assert cortex.obs["library"].nunique() == 12
    assert cortex.obs_names.is_unique and cortex.var_names.is_unique


def test_kang_subset():
    kang = si.datasets.kang2018_pbmc_subset()
    assert kang.n_obs == 2000 and 2000 <= kang.n_vars <= 2100
    assert sp.issparse(kang.X) and kang.X.dtype == np.float32
    data = kang.X.data
    assert (data >= 0).all() and np.array_equal(data, np.round(data))
    assert kang.obs["condition"].value_counts().to_dict() == {"ctrl": 1000, "stim": 1000}
    assert {"CD14 Mono", "B", "T", "NK"} <= set(kang.obs["cell_type"])
    assert {"CD14", "MS4A1", "CD3E", "GNLY"} <= set(kang.var_names)
    assert kang.obs_names.is_unique and kang.var_names.is_unique


def test_rna_atac_simulation_is_seeded_and_linked():
    a = si.datasets.simulate_rna_atac(n_rna=40, n_atac=30, n_types=2, n_genes=20, random_state=3)
    b = si.datasets.simulate_rna_atac(n_rna=40, n_atac=30, n_types=2, n_genes=20, random_state=3)
    assert a["rna"].shape == (40, 20) and a["atac"].n_obs == 30
    assert abs(a["rna"].X - b["rna"].X).sum() == 0 and abs(a["atac"].X - b["atac"].X).sum() == 0
    links = a["atac"].varm["gene_activity"]
    assert links.shape == (a["atac"].n_vars, 20) and links.sum() == 20 * 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"noise": -1.0}, "noise must be a finite number >= 0"),
        ({"rna_depth": 0}, "rna_depth must be a finite number > 0"),
        ({"de_effect": "big"}, "de_effect must be a finite number"),
        ({"atac_dropout": 1.0}, "atac_dropout must be below 1"),
        ({"rna_dropout": np.nan}, "rna_dropout must be a finite number"),
        ({"de_fraction": 0}, "de_fraction must be a finite number > 0 and <= 1"),
        ({"rna_types": [0, 5]}, "rna_types must list distinct cell types"),
    ],
)
def test_rna_atac_simulation_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        si.datasets.simulate_rna_atac(n_rna=20, n_atac=20, n_genes=10, **kwargs)


def test_branch_simulation_bad_input():
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        si.datasets.branch_simulation(n_obs=10, noise="loud")
    with pytest.raises(ValueError, match="n_obs must be an integer >= 4"):
        si.datasets.branch_simulation(n_obs=3)

"""Every plot takes a MuData: one joint view of the container (cells of every modality, coloured
or grouped by "modality", muon's "mod:column" or a gathered column) or one panel per modality,
and the user's MuData is left as it was (the UMAP / t-SNE add only their documented slots)."""

from __future__ import annotations

import functools
import warnings

import matplotlib.pyplot as plt
import mudata
import numpy as np
import pandas as pd
import pytest
from _public_calls import cortex
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import scintegrate as si

warnings.filterwarnings("ignore", category=FutureWarning, module="mudata")


@functools.cache
def _integrated():
    cells = cortex()
    rna, atac = cells[::2].copy(), cells[1::2].copy()
    atac.obs_names = [f"{n}-atac" for n in atac.obs_names]
    mdata = mudata.MuData({"rna": rna, "atac": atac})
    si.tl.online_inmf(mdata, 3, preprocess=True, max_epochs=2, batch_size=40)
    si.pp.quantile_norm(mdata, min_cells=5, n_neighbors=5)
    si.tl.factor_markers(mdata, factor_share_thresh=None, logfc_thresh=0.1, pval_thresh=0.5)
    return mdata


@pytest.fixture
def mdata():
    return _integrated().copy()


# one MuData call per public plot; a new plot function must be added here
CALLS = {
    "delta_w": {"key": "inmf"},
    "factor_heatmap": {"key": "inmf", "groupby": "cell_type"},
    "gene_loadings": {"key": "inmf", "factor": 0, "markers_key": "inmf_markers"},
    "proportions": {"groupby": "inmf_qn_clusters", "batch_key": "modality"},
    "top_features": {"key": "inmf", "n_top": 3},
    "training_curve": {"key": "inmf", "y": "objective", "y2": None},
    "tsne": {"key": "inmf", "color": ["modality", "rna:cell_type"]},
    "umap": {"key": "inmf", "color": ["modality", "cell_type"]},
}
# what a plot may add to the container (documented: the cached embedding and its graph)
ADDED = {
    "tsne": {"obsm:X_inmf_tsne", "uns:X_inmf_tsne"},
    "umap": {
        "obsm:X_inmf_umap",
        "uns:X_inmf_umap",
        "uns:inmf_neighbors",
        "obsp:inmf_neighbors_distances",
        "obsp:inmf_neighbors_connectivities",
    },
}


def test_every_plot_is_covered():
    assert set(CALLS) == set(si.pl.__all__)


def _state(mdata) -> dict:
    """Everything a plot could change: the keys of every slot and the annotations' values."""
    state = {"obs": mdata.obs.copy(), "var": mdata.var.copy()}
    for group in ("obsm", "obsp", "uns"):
        state.update({f"{group}:{k}": None for k in getattr(mdata, group)})
    for name, mod in mdata.mod.items():
        state[f"{name}:obs"] = mod.obs.copy()
        state[f"{name}:var"] = mod.var.copy()
        state[f"{name}:X"] = mod.X.copy()
        for group in ("obsm", "varm", "obsp", "layers", "uns"):
            state[f"{name}:{group}"] = sorted(getattr(mod, group))
    return state


def _same(before: dict, after: dict, added: set) -> None:
    # scanpy keeps the colours of a categorical it draws in uns[f"{column}_colors"], as for an
    # AnnData
    new = {k for k in set(after) - set(before) if not k.endswith("_colors")}
    assert new <= added, new
    assert set(before) <= set(after)
    for key, value in before.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(after[key], value)
        elif key.endswith(":X"):
            assert (after[key] != value).nnz == 0
        else:
            assert after[key] == value, key


@pytest.mark.parametrize("name", sorted(CALLS))
def test_plot_of_a_mudata(mdata, name):
    before = _state(mdata)
    result = getattr(si.pl, name)(mdata, show=False, **CALLS[name])
    panels = result if isinstance(result, list) else [result]
    assert panels and all(isinstance(p, Axes) for p in panels)
    _same(before, _state(mdata), ADDED.get(name, set()))
    plt.close("all")


def test_joint_views_hold_every_modality(mdata):
    ax = si.pl.factor_heatmap(mdata, "inmf", groupby="modality")
    assert ax.images[0].get_array().shape == (mdata.n_obs, 3)
    ax = si.pl.proportions(mdata, groupby="rna:cell_type", batch_key="modality", normalize=False)
    # the RNA cells only have an 'rna:cell_type': its bars count the RNA cells
    heights = sum(patch.get_height() for patch in ax.patches)
    assert heights == mdata["rna"].n_obs
    panels = si.pl.top_features(mdata, "inmf", n_top=2)
    assert [p.get_title().split(":")[0] for p in panels] == list(mdata.mod)
    fig = si.pl.gene_loadings(mdata, "inmf", factor=1, return_fig=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 3  # shared + one per modality
    plt.close("all")


def test_per_modality_panels_for_paired_cells():
    cells = cortex()
    paired = mudata.MuData({"rna": cells.copy(), "again": cells.copy()})
    si.tl.online_inmf(paired, 2, preprocess=True, max_epochs=1)
    assert "X_inmf" not in paired.obsm  # one container row cannot hold two datasets' factors
    panels = si.pl.factor_heatmap(paired, "inmf", groupby="cell_type")
    assert len(panels) == 2 and panels[1].get_title().startswith("again")
    _, axes = plt.subplots(1, 2)
    assert si.pl.factor_heatmap(paired, "inmf", groupby="modality", ax=axes) == list(axes)
    with pytest.raises(ValueError, match="2 panels"):
        si.pl.factor_heatmap(paired, "inmf", groupby="cell_type", ax=axes[0])
    with pytest.raises(ValueError, match="Neither the MuData nor any of its modalities"):
        si.pl.training_curve(paired, "nope")
    plt.close("all")


def test_mudata_plot_errors_name_the_fix(mdata):
    with pytest.raises(ValueError, match="groupby"):
        si.pl.proportions(mdata, groupby="no_such", batch_key="modality")
    with pytest.raises(ValueError, match="X_nope"):
        si.pl.factor_heatmap(mdata, "nope", groupby="modality")
    assert np.isfinite(mdata.obsm["X_inmf"]).all()

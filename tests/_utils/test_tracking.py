"""Training-time tracking of clustering quality (``_utils/_tracking.label_tracker``)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scintegrate as si
from scintegrate._utils._tracking import label_tracker


def _adata(labels):
    return ad.AnnData(
        np.zeros((len(labels), 2), dtype=np.float32),
        obs=pd.DataFrame({"type": labels}, index=[str(i) for i in range(len(labels))]),
    )


def test_tracker_scores_as_the_metrics_do():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 20)
    embedding = np.repeat(np.eye(3) * 10, 20, axis=0) + rng.normal(size=(60, 3))
    track = label_tracker(_adata(labels), "type", resolution=0.5, metric="euclidean")
    scores = track(embedding)
    assert scores["ari"] == si.metrics.ari(embedding, labels, resolution=0.5)
    assert scores["nmi"] == si.metrics.nmi(embedding, labels, resolution=0.5)
    assert label_tracker(_adata(labels), None, resolution=-1, metric="cosine") is None


@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        (["a", None, "b"], {}, "missing values"),
        (["a", "b", "b"], {"labels_key": "cell_type"}, "not a column of adata.obs"),
        (["a", "b", "b"], {"resolution": -1}, "resolution must be a finite number > 0"),
        (["a", "b", "b"], {"resolution": "high"}, "resolution must be a finite number"),
    ],
)
def test_tracker_refuses_bad_input_before_training(labels, kwargs, message):
    kwargs = {"labels_key": "type", "resolution": 1.0, "metric": "cosine", **kwargs}
    adata = _adata(np.asarray(labels, dtype=object))
    with pytest.raises(ValueError, match=message):
        label_tracker(adata, kwargs.pop("labels_key"), **kwargs)

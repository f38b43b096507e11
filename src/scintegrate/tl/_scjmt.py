"""``tl.scjmt``: joint tri-factorization of unpaired scRNA-seq and scATAC-seq (Zhang et al. 2021)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._core._sparse import as_csr
from .._docs import doc_params
from .._logging import logger
from .._settings import settings
from .._utils._device import resolve_device
from .._utils._random import get_rng
from .._utils._slots import h5ad_safe, history_frame, record_params, write_slots
from .._utils._validation import (
    check_finite,
    check_finite_nonnegative,
    check_in,
    check_key,
    check_number,
    check_positive_int,
    get_matrix,
)

if TYPE_CHECKING:
    from mudata import MuData


def _modalities(mdata, mods) -> tuple[AnnData, AnnData]:
    from mudata import MuData

    if not isinstance(mdata, MuData):
        raise TypeError(
            f"mdata must be a MuData with an RNA and an ATAC modality, got "
            f"{type(mdata).__name__}. Build one with mudata.MuData({{'rna': rna, 'atac': atac}})."
        )
    if isinstance(mods, str) or len(mods) != 2 or mods[0] == mods[1]:
        raise ValueError(f"mods must name two different modalities (RNA, ATAC), got {mods!r}.")
    for m in mods:
        if m not in mdata.mod:
            raise ValueError(
                f"Modality {m!r} is not in mdata (modalities: {', '.join(mdata.mod)}); pass "
                "mods=(rna_name, atac_name)."
            )
    rna, atac = mdata.mod[mods[0]], mdata.mod[mods[1]]
    for m, ad in zip(mods, (rna, atac), strict=True):
        if ad.n_obs < 2 or ad.n_vars == 0:
            raise ValueError(
                f"Modality {m!r} is empty or nearly so ({ad.n_obs} cells x {ad.n_vars} "
                "features); scJMT needs cells and features in both modalities."
            )
    shared = rna.obs_names.intersection(atac.obs_names)
    if len(shared):
        raise ValueError(
            f"{len(shared)} cells (e.g. {shared[0]!r}) are in both modalities. scJMT integrates "
            "unpaired data (RNA cells and ATAC cells are different cells): give the cells of "
            "each modality distinct names, e.g. atac.obs_names = atac.obs_names + '-atac'."
        )
    return rna, atac


def _gene_activity(gene_activity, rna: AnnData, atac: AnnData) -> sp.csr_matrix:
    """The genes x regions matrix A, rows in the order of the RNA genes, columns of the peaks."""
    if isinstance(gene_activity, str):
        if gene_activity not in atac.varm:
            raise ValueError(
                f"gene_activity={gene_activity!r} is not in the ATAC varm (keys: "
                f"{', '.join(atac.varm.keys()) or 'none'}). Run scintegrate.pp.gene_activity("
                "mdata, annotation=..., genes=mdata['rna'].var_names) first, or pass the genes x "
                "regions matrix itself."
            )
        links = sp.csr_matrix(atac.varm[gene_activity]).T.tocsr()  # genes x peaks
        names = None
        if gene_activity in atac.uns and "genes" in atac.uns[gene_activity]:
            names = pd.Index(np.asarray(atac.uns[gene_activity]["genes"]).astype(str))
        if names is None or len(names) != links.shape[0]:
            raise ValueError(
                f"atac.uns[{gene_activity!r}]['genes'] must name the {links.shape[0]} genes of "
                f"atac.varm[{gene_activity!r}] (pp.gene_activity writes both)."
            )
        return _match_genes(links, names, rna)
    if isinstance(gene_activity, pd.DataFrame):
        missing = atac.var_names.difference(gene_activity.columns.astype(str))
        if len(missing):
            raise ValueError(
                f"The regions of gene_activity do not match the ATAC peaks: {len(missing)} peaks "
                f"(e.g. {missing[0]!r}) are not among its columns."
            )
        frame = gene_activity.copy()
        frame.columns = frame.columns.astype(str)
        links = sp.csr_matrix(frame.loc[:, atac.var_names].to_numpy(dtype=np.float64))
        return _match_genes(links, pd.Index(frame.index.astype(str)), rna)
    if not (sp.issparse(gene_activity) or isinstance(gene_activity, np.ndarray)):
        raise ValueError(
            "gene_activity must be a varm key of the ATAC modality, a genes x regions sparse "
            f"matrix or array, or a DataFrame; got {type(gene_activity).__name__}."
        )
    links = sp.csr_matrix(gene_activity, dtype=np.float64)
    if links.shape != (rna.n_vars, atac.n_vars):
        raise ValueError(
            f"gene_activity has shape {links.shape}; it must be genes x regions = ({rna.n_vars}, "
            f"{atac.n_vars}), rows in the order of the RNA genes and columns in the order of "
            "the ATAC peaks."
        )
    check_finite_nonnegative(links, what="gene_activity")
    return links


def _match_genes(links: sp.csr_matrix, names: pd.Index, rna: AnnData) -> sp.csr_matrix:
    check_finite_nonnegative(links, what="gene_activity")
    index = names.get_indexer(rna.var_names)
    found = index >= 0
    if not found.any():
        raise ValueError(
            "The genes of the gene activity matrix do not match the RNA genes (no name in "
            f"common; e.g. {names[0]!r} vs {rna.var_names[0]!r}). Build it with "
            "pp.gene_activity(..., genes=mdata['rna'].var_names)."
        )
    if not found.all():
        logger.warning(
            "%d of %d RNA genes are not in the gene activity matrix; they are linked to no region.",
            int((~found).sum()),
            len(found),
        )
    pick = sp.csr_matrix(
        (np.ones(int(found.sum())), (np.flatnonzero(found), index[found])),
        shape=(rna.n_vars, len(names)),
    )
    out = sp.csr_matrix(pick @ links)
    if out.nnz == 0:
        raise ValueError("The gene activity matrix links no RNA gene to any ATAC region.")
    return out


def _preprocess(X, kind: str):
    """RNA: library-size normalised to the median total, log1p, each gene divided by its maximum
    (values in [0, 1]); ATAC: binarised. Sparse stays sparse; ``X`` itself is not modified."""
    X = as_csr(X, dtype=np.float64, canonical=True)  # a private copy, explicit zeros removed
    if kind == "atac":
        X.data[:] = 1.0
        return X
    totals = np.asarray(X.sum(1)).ravel()
    target = np.median(totals[totals > 0]) if (totals > 0).any() else 1.0
    X = sp.csr_matrix(sp.diags(np.where(totals > 0, target / np.maximum(totals, 1e-300), 0)) @ X)
    np.log1p(X.data, out=X.data)
    # each gene on the same scale, as the authors' per-gene quantile normalisation puts it, so
    # that lowly expressed marker genes weigh as much as abundant ones (SNARE-seq cortex, pairing
    # hidden, 15 clusters, median of three seeds: Leiden ARI 0.176 -> 0.196, FOSCTTM 0.335 ->
    # 0.297)
    gene_max = np.zeros(X.shape[1])
    np.maximum.at(gene_max, X.indices, X.data)
    X.data /= np.where(gene_max > 0, gene_max, 1.0)[X.indices]
    return X


def _activity_scores(R, A: sp.csr_matrix, *, binarise: bool) -> sp.csr_matrix:
    """The ATAC cells' gene activity ``R Aᵀ`` (ATAC cells x genes), binarised with
    ``binarise`` (scMoMaT's pseudo-RNA: a gene is 1 in a cell where any linked peak is open)."""
    P = sp.csr_matrix(as_csr(R, dtype=np.float64) @ A.T)
    P.eliminate_zeros()
    if binarise:
        P.data[:] = 1.0
    return P


def _check_weights(weights) -> dict:
    from .._core.scjmt import DEFAULT_WEIGHTS  # imports torch

    if weights is None:
        return dict(DEFAULT_WEIGHTS)
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be a dict such as {{'features': 0.5}}, got {weights!r}.")
    unknown = set(weights) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise ValueError(
            f"Unknown weights {sorted(unknown)}; the terms are {', '.join(DEFAULT_WEIGHTS)}."
        )
    checked = {k: check_number(v, param=f"weights[{k!r}]", minimum=0) for k, v in weights.items()}
    return {**DEFAULT_WEIGHTS, **checked}


def _smoothing(smooth, n_rna_only: int, n_atac_only: int) -> str:
    """The post-processing that ``smooth`` asks for: ``"mean"``, ``"shift"`` or ``"none"``."""
    if isinstance(smooth, bool | np.bool_):
        return "mean" if smooth else "none"
    if not isinstance(smooth, str) or smooth not in ("auto", "mean", "shift"):
        raise ValueError(
            f"smooth={smooth!r} is not supported; choose 'auto', 'mean', 'shift', True (the same "
            "as 'mean') or False (no post-processing)."
        )
    if smooth == "auto":
        # measured: the shift is ahead wherever the compositions differ (simulated and real),
        # the mean on the full SNARE-seq cortex, where every cluster is shared
        return "shift" if n_rna_only + n_atac_only > 0 else "mean"
    return smooth


def _cluster_sizes(n_clusters, n_shared, n_rna_only, n_atac_only) -> tuple[int, int, int, int]:
    n_rna_only = check_positive_int(n_rna_only, param="n_rna_only", minimum=0)
    n_atac_only = check_positive_int(n_atac_only, param="n_atac_only", minimum=0)
    private = n_rna_only + n_atac_only
    if n_clusters is None and n_shared is None:
        raise ValueError(
            "Give n_clusters (all cell clusters, shared + RNA-only + ATAC-only) or n_shared."
        )
    if n_clusters is not None:
        n_clusters = check_positive_int(n_clusters, param="n_clusters")
    if n_shared is None:
        n_shared = n_clusters - private
        if n_shared < 1:
            raise ValueError(
                f"n_clusters={n_clusters} leaves no shared cluster after n_rna_only={n_rna_only} "
                f"and n_atac_only={n_atac_only}; scJMT needs at least one shared cluster."
            )
    n_shared = check_positive_int(n_shared, param="n_shared")
    if n_clusters is None:
        n_clusters = n_shared + private
    if n_shared > n_clusters:
        raise ValueError(
            f"n_shared={n_shared} is larger than n_clusters={n_clusters}; the shared clusters "
            "are part of all clusters."
        )
    if n_shared + private != n_clusters:
        raise ValueError(
            f"n_shared + n_rna_only + n_atac_only = {n_shared + private} must equal "
            f"n_clusters={n_clusters} (the paper's N_1 + N_2 - k)."
        )
    return n_clusters, n_shared, n_rna_only, n_atac_only


@doc_params
def scjmt(
    mdata,
    n_clusters: int | None = None,
    *,
    mods: Sequence[str] = ("rna", "atac"),
    gene_activity: str | sp.spmatrix | np.ndarray | pd.DataFrame = "gene_activity",
    n_shared: int | None = None,
    n_rna_only: int = 0,
    n_atac_only: int = 0,
    n_feature_clusters: int | None = None,
    weights: Mapping[str, float] | None = None,
    center_couplings: bool = False,
    init: str = "matched",
    preprocess: bool = True,
    max_iter: int = 100,
    inner_steps: int = 5,
    lr: float = 0.1,
    tol: float = 1e-6,
    n_restarts: int = 1,
    smooth: bool | Literal["auto", "mean", "shift"] = "auto",
    n_neighbors: int = 20,
    device: str = "auto",
    random_state: int | np.random.Generator | None = 0,
    key_added: str = "scjmt",
    copy: bool = False,
) -> MuData | None:
    """scJMT: joint matrix tri-factorization of unpaired scRNA-seq and scATAC-seq.

    Objective (3) of Zhang et al. (2021). The RNA matrix ``G`` (RNA cells x genes) and the ATAC
    matrix ``R`` (ATAC cells x regions) are tri-factorized, ``R ≈ C_1 Σ_r C_rᵀ + b_1 + b_rᵀ`` and
    ``G ≈ C_2 Σ_g C_gᵀ + b_2 + b_gᵀ``, with every row of the cell factors ``C_1, C_2`` and
    feature factors ``C_g, C_r`` on the simplex (row softmax), so that each is a soft clustering.
    Two cosine similarities tie the modalities: between ``Σ_r`` and ``Σ_g``, and between the
    gene factors ``C_g`` and the region factors carried to genes by the gene activity matrix,
    ``A C_r``. For unequal compositions the cell clusters are ``n_shared`` shared ones, then
    ``n_rna_only`` RNA-only and ``n_atac_only`` ATAC-only ones (the paper's ``N_1 + N_2 - k``),
    and a penalty ``||C_2[:, ATAC-only]||² + ||C_1[:, RNA-only]||²`` (per cell) keeps each
    modality's cells out of the other's private clusters.

    Reconstruction errors are divided by the data's total variance (so the ``weights`` mean the
    same for any data size). Optimisation follows the paper's block-wise scheme on the full data:
    each iteration takes ``inner_steps`` Adam steps on each of ``C_1, C_2, Σ_r, Σ_g, C_r, C_g``
    in turn (the others fixed) and then sets the biases to their closed-form minimisers. Data
    enter only through sparse products (no dense cells x features matrix). ``n_restarts`` runs
    with different seeds, the lowest objective is kept.

    Initialisation (``init``): the paper draws every factor from N(0, 1). From such a start each
    modality is clustered well but the two modalities' clusters are often joined to the wrong
    partner: the objective barely tells a correct from a permuted matching (objectives within
    ~1e-4). The default ``"matched"`` start therefore clusters each modality alone (k-means on
    a truncated SVD of the log-normalised RNA and of the TF-IDF-weighted ATAC), matches the
    clusters through the gene activity matrix (correlation of the RNA cluster expression
    profiles with the ATAC cluster gene-activity profiles; the ``n_shared`` best pairs by linear
    assignment become the shared dimensions, the rest the private ones), adds ``3`` to the
    N(0, 1) cell logits of each cell's matched dimension, and fits the association and feature
    factors with the cell factors fixed for the first quarter of ``max_iter`` before all blocks
    are updated. ``"random"`` is the paper's start.

    Gene activity term (``weights["activity"]``, default 1; not in the scJMT paper): the
    ATAC cells' gene activity ``P = R Aᵀ`` (binarised when ``preprocess``: 1 where any peak
    linked to the gene is open, scMoMaT's "pseudo-RNA") is reconstructed as ``C_1 Σ_g C_gᵀ`` plus
    cell and gene biases, with the RNA's association matrix and gene factors. This is how the
    published successor of scJMT, scMoMaT (Zhang et al., Nat. Commun. 2023), joins unpaired RNA
    and ATAC. With the paper's objective alone (``weights={"activity": 0}``) the two cosines are
    the only link between the modalities; on SNARE-seq mouse cortex (10,309 nuclei, pairing
    hidden) the term takes FOSCTTM from 0.454 to 0.329, the ARI of the own clusters from 0.040
    to 0.130 and of Leiden clusters (resolution 0.3) from 0.114 to 0.149; on the simulated
    scenarios it does no harm (``benchmarks/README.md``).

    Post-processing (``smooth``): equations (4)-(5), each ATAC cell's factor is replaced by the
    ``exp(-||C_1(p) - C_2(q)||²)``-weighted mean of its mutual nearest RNA neighbours (sparse
    kNN), ATAC cells without a mutual neighbour keep their factor; or, by default when the
    compositions differ, every ATAC cell is shifted by the mean of these moves among its
    nearest ATAC cells (see ``smooth``).

    Parameters
    ----------
    mdata
        MuData with an RNA modality (cells x genes, counts) and an ATAC modality (cells x peaks,
        counts), whose cells are *different* cells (distinct names; ``mdata.obs`` is their
        union).
    n_clusters
        Number of cell clusters (latent dimension); ``n_shared + n_rna_only + n_atac_only``.
        The own clusters (the argmax) need about as many as there are cell types; Leiden
        clusters of ``X_{key_added}`` gain from more (SNARE-seq cortex, 15 coarse types, pairing
        hidden: median ARI at resolution 0.3 over eight seeds 0.192 with 15 and 0.243 with 20
        clusters, against 0.214 and 0.223 for online iNMF + quantile normalisation with as many
        factors; simulated with 5 types: 0.797 with 5 and 0.979 with 20, while the own
        clusters fall from 0.994 to 0.591; ``benchmarks/README.md``).
    mods
        Names of the RNA and the ATAC modality.
    gene_activity
        The genes x regions matrix ``A``: a key of the ATAC ``varm`` written by
        :func:`scintegrate.pp.gene_activity` (regions x genes, gene names in
        ``atac.uns[key]["genes"]``, matched to the RNA genes by name), a sparse matrix or array
        of shape (RNA genes, ATAC peaks), or a DataFrame with genes as index and peaks as
        columns. Its rows are normalised to sum 1.
    n_shared
        Clusters present in both modalities; by default ``n_clusters - n_rna_only -
        n_atac_only``.
    n_rna_only, n_atac_only
        Clusters present only in the RNA or only in the ATAC data.
    n_feature_clusters
        Number of gene and region clusters (columns of ``C_g``, ``C_r``); default ``4 *
        n_clusters``.
    weights
        Weights of the terms, any of ``"rna"`` and ``"atac"`` (reconstruction, default 1),
        ``"activity"`` (reconstruction of the ATAC cells' gene activity with the RNA's ``Σ_g``
        and ``C_g``, see above; default 1; 0 gives the paper's objective), ``"sigma"``
        (cos(Σ_r, Σ_g), 0.1), ``"features"`` (cos(C_g, A C_r), 0.1), ``"private"``
        (private-cluster penalty, 1) and ``"orthogonality"`` (rewards hard cell clusters, the
        authors' code's extra term; 0, off).
    center_couplings
        Compute both cosine similarities on column-centred matrices (each column's mean over
        rows removed). Not in the paper: its uncentred cosines saturate near 1 because simplex
        rows share a large common component, so they barely tell a correct matching of the two
        modalities' clusters from a permuted one. In quick trials on the unequal-composition
        simulation with ``weights={"sigma": 1, "features": 1}`` it matched the clusters more
        often than the defaults but did worse on the equal-composition one (figures in
        ``benchmarks/README.md``); off by default.
    init
        ``"matched"`` (per-modality clusters matched through the gene activity, see above) or
        ``"random"`` (N(0, 1) factors, Algorithm 1 of the paper).
    preprocess
        RNA: library-size normalisation to the median total, ``log1p``, each gene divided by
        its maximum; ATAC: binarised (the authors' choices, except that their per-gene quantile
        normalisation, which puts every gene on the same scale, is replaced by the library-size
        normalisation and the division by each gene's maximum, to keep the data sparse).
        ``False`` uses ``.X`` of both modalities as given.
    max_iter
        Iterations (each updates every block once). On SNARE-seq cortex the objective still
        falls at 100: with 20 clusters, 200 iterations raised the median Leiden ARI at
        resolution 0.3 over 8 seeds from 0.242 to 0.265 (higher in 5 of the 8) and made FOSCTTM
        slightly worse (0.308 to 0.317), at twice the time (``benchmarks/README.md``).
    inner_steps
        Adam steps per block and iteration.
    lr
        Adam learning rate.
    tol
        Stop when the objective changes by less than ``tol`` (relative) over 10 iterations.
    n_restarts
        Independent random starts; the one with the lowest final objective is kept. One by
        default: from the ``"matched"`` start, three restarts took three times as long in the
        benchmarks (``benchmarks/README.md``, ``scjmt.py``) without improving the ARI of the own
        clusters on six simulated datasets, nor any score on SNARE-seq cortex (where seed 0
        kept the same solution); raise it when different seeds give very different objectives.
    smooth
        Post-processing of the ATAC factors, from each ATAC cell's mutual nearest RNA
        neighbours (``n_neighbors`` each way; 54-79 % of the ATAC cells have one on the
        simulations and on SNARE-seq cortex, 35-39 % on a real subset with unequal
        compositions). The RNA factors are never changed.

        * ``"mean"`` (or ``True``): equations (4)-(5), the paper's post-processing for real
          data. Each ATAC cell with a mutual RNA neighbour is replaced by its partners'
          weighted mean; the others keep their factor.
        * ``"shift"``: mutual-nearest-neighbour batch correction (Haghverdi et al., Nat.
          Biotechnol. 2018). The replacement above gives each of those cells a shift, and every
          ATAC cell moves by the mean shift of its ``n_neighbors`` nearest of them (nearest in
          the ATAC factors), clipped at zero and rescaled to sum 1. The ATAC cells keep their
          own arrangement, and the cells without a partner move with their neighbours.
        * ``"auto"`` (default): ``"shift"`` when private clusters are asked for (``n_rna_only``
          or ``n_atac_only``), otherwise ``"mean"``. A rule read off the measurements below,
          not a property of the data: no label-free statistic measured so far tells where each
          is better (``benchmarks/README.md``).
        * ``False``: none; ``X_{key_added}`` equals ``{key_added}_C``.

        Measured (Leiden ARI at resolution 0.3 / the best of a grid, medians; mean, shift,
        none; ``benchmarks/README.md``):

        * simulated, 20 clusters, 6 datasets x 3 seeds: a type only in the RNA 0.942, 0.996,
          0.993 (scMoMaT 0.963); a type only in each modality 0.777, 0.980, 0.990 (scMoMaT
          0.963); equal compositions 0.977, 0.988, 0.985 (scMoMaT 0.949). Replacing cells by
          RNA means gathers them apart from the RNA cells and from the unmoved ATAC cells.
        * SNARE-seq halves (RNA of one half, ATAC of the other), 3 seeds: oligodendrocytes only
          in the RNA, 0.165 / 0.304, 0.165 / 0.815, 0.138 / 0.280 (scMoMaT 0.205 / 0.725);
          five shared types, 0.299 / 0.671, 0.303 / 0.663, 0.253 / 0.464 (scMoMaT 0.174 /
          0.257).
        * SNARE-seq cortex, 20 shared clusters, 8 seeds: 0.243 / 0.355, 0.220 /
          0.278, 0.202 / 0.266 (our LIGER path 0.223 / 0.314). Here the ATAC factors carry
          little cell-type signal of their own, and the RNA means are what places the ATAC
          cells. The same nuclei with the oligodendrocytes removed from the ATAC, 19 shared + 1
          RNA-only clusters, 4 seeds: 0.216 / 0.293, 0.230 / 0.286, 0.180 / 0.214, and the
          shift mixes the modalities more (RNA share among an ATAC cell's 15 nearest
          neighbours, over the RNA share of all cells: 0.31, 0.57, 0.45).

        To mix every ATAC cell with the RNA cells, follow with the LIGER path's last step,
        ``pp.quantile_norm(mdata, use_rep=f"X_{key_added}", reference="rna")`` (it reads each
        modality's ``obsm``; ``reference`` is the RNA modality's name). After ``"mean"`` on
        SNARE-seq cortex (20 clusters, 8 seeds) it keeps the Leiden ARI at resolution 0.3
        (0.236), lowers the best-resolution ARI (0.314) and raises the scIB batch correction of
        4,000 nuclei on every seed scored (0.695-0.707 against 0.567-0.623; the LIGER path
        0.648-0.692), Total 0.559-0.576 against the LIGER path's 0.549-0.577; with 15 clusters
        it brings the ARI at 0.3 to the LIGER path's (0.213 against 0.214). On the simulations
        it costs (after ``"shift"``, the two unequal designs: 0.978 and 0.935).
    n_neighbors
        Neighbours of the mutual-nearest-neighbour search, and moved ATAC cells whose shifts
        are averaged (``smooth="shift"``).
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda[:n]"``.
    {random_state}
    {key_added}
    {copy}

    Returns
    -------
    ``None``, or the modified copy of ``mdata`` when ``copy=True``. Written:

    ``mdata.obsm[f"X_{key_added}"]``
        Cell factors (n_obs x n_clusters): ``C_2`` for RNA cells, ``C_1`` (smoothed when
        ``smooth``) for ATAC cells; NaN rows for cells in neither modality.
    ``mdata.obsm[f"{key_added}_C"]``
        The fitted cell factors before smoothing.
    ``mdata[rna].obsm``, ``mdata[atac].obsm``
        The same two entries for each modality's own cells (what
        :func:`scintegrate.pp.quantile_norm` reads from a MuData, see ``smooth``).
    ``mdata.obs[f"{key_added}_clusters"]``
        Categorical cluster of every cell, the argmax of ``X_{key_added}`` (NaN outside the two
        modalities).
    ``mdata[rna].varm[f"{key_added}_C_g"]``, ``mdata[atac].varm[f"{key_added}_C_r"]``
        Gene and region factors (features x n_feature_clusters, simplex rows).
    ``mdata[rna].var[f"{key_added}_clusters"]``, ``mdata[atac].var[f"{key_added}_clusters"]``
        Gene and region clusters (argmax), categorical.
    ``mdata.uns[key_added]``
        ``Sigma_g`` and ``Sigma_r`` (n_clusters x n_feature_clusters), ``cluster_roles``
        (``"shared"``, ``"rna_only"`` or ``"atac_only"`` per cell cluster), ``objective`` and
        its ``terms``, ``restart_objectives``, ``params`` (every argument, package version,
        device), ``history`` (a DataFrame every 10 iterations: objective, its terms, seconds)
        and ``slots`` (the slots written, which a later call with the same ``key_added``
        removes first).
    """
    import torch

    from .._core.scjmt import fit_scjmt, mnn_shift, mnn_smooth

    rna, atac = _modalities(mdata, mods)
    key_added = check_key(key_added)
    n_clusters, n_shared, n_rna_only, n_atac_only = _cluster_sizes(
        n_clusters, n_shared, n_rna_only, n_atac_only
    )
    M = 4 * n_clusters if n_feature_clusters is None else n_feature_clusters
    M = check_positive_int(M, param="n_feature_clusters")
    largest = min(rna.n_obs, atac.n_obs)
    if n_clusters > largest:
        raise ValueError(
            f"n_clusters={n_clusters} is larger than the number of cells of the smaller modality "
            f"({largest}); choose fewer clusters."
        )
    features = min(rna.n_vars, atac.n_vars)
    if M > features:
        raise ValueError(
            f"n_feature_clusters={M} is larger than the number of features of the smaller "
            f"modality ({features}); choose fewer (by default 4 x n_clusters)."
        )
    w = _check_weights(weights)
    max_iter = check_positive_int(max_iter, param="max_iter")
    inner_steps = check_positive_int(inner_steps, param="inner_steps")
    n_restarts = check_positive_int(n_restarts, param="n_restarts")
    n_neighbors = check_positive_int(n_neighbors, param="n_neighbors")
    lr = check_number(lr, param="lr", minimum=0, exclusive_minimum=True)
    tol = check_number(tol, param="tol", minimum=0)
    check_in(init, ("matched", "random"), param="init")
    smoothing = _smoothing(smooth, n_rna_only, n_atac_only)
    resolved = resolve_device(device)
    rng = get_rng(random_state)
    A = _gene_activity(gene_activity, rna, atac)

    matrices = []
    for m, ad, kind in ((mods[0], rna, "rna"), (mods[1], atac, "atac")):
        X = get_matrix(ad, None)
        if preprocess:
            check_finite_nonnegative(
                X, what=f"mdata[{m!r}].X", fix="preprocess=True expects raw counts."
            )
            X = _preprocess(X, kind)
        else:
            check_finite(X, what=f"mdata[{m!r}].X")
        if not (np.asarray(abs(X).sum(1)).ravel() > 0).any():
            raise ValueError(f"Every cell of modality {m!r} is empty.")
        matrices.append(X)
    for m, ad in ((mods[0], rna), (mods[1], atac)):
        if not ad.obs_names.is_unique:
            raise ValueError(
                f"mdata[{m!r}] has duplicated cell names; make them unique first "
                "(mdata[mod].obs_names_make_unique(), then mdata.update())."
            )
    if not mdata.obs_names.is_unique:
        raise ValueError(
            "mdata.obs_names has duplicated cell names; make them unique first "
            "(mdata.obs_names_make_unique(), then mdata.update())."
        )

    activity = None
    if w["activity"] > 0:
        activity = _activity_scores(matrices[1], A, binarise=preprocess)
    result = fit_scjmt(
        matrices[0],
        matrices[1],
        A,
        activity,
        n_shared=n_shared,
        n_rna_only=n_rna_only,
        n_atac_only=n_atac_only,
        n_feature_clusters=M,
        weights=w,
        max_iter=max_iter,
        inner_steps=inner_steps,
        lr=lr,
        tol=tol,
        n_restarts=n_restarts,
        center_couplings=bool(center_couplings),
        init=init,
        device=resolved,
        dtype=torch.float32,
        rng=rng,
        progress=settings.progress_bar,
    )

    c_atac = result.C_atac
    if smoothing != "none":
        smoother = mnn_shift if smoothing == "shift" else mnn_smooth
        c_atac, moved = smoother(result.C_atac, result.C_rna, n_neighbors=n_neighbors)
        logger.info(
            "MNN smoothing (%s): %d of %d ATAC cells have a mutual RNA neighbour.",
            smoothing,
            int(moved.sum()),
            len(moved),
        )
    rows_rna = mdata.obs_names.get_indexer(rna.obs_names)
    rows_atac = mdata.obs_names.get_indexer(atac.obs_names)
    embedding = np.full((mdata.n_obs, n_clusters), np.nan)
    raw = np.full((mdata.n_obs, n_clusters), np.nan)
    embedding[rows_rna], raw[rows_rna] = result.C_rna, result.C_rna
    embedding[rows_atac], raw[rows_atac] = c_atac, result.C_atac
    categories = [str(i) for i in range(n_clusters)]
    labels = np.full(mdata.n_obs, None, dtype=object)
    embedded = ~np.isnan(embedding).any(axis=1)
    labels[embedded] = np.argmax(embedding[embedded], axis=1).astype(str)

    feature_categories = [str(i) for i in range(M)]
    # each modality also holds its own cells' factors, as tl.inmf writes them, so that the
    # alignment tools that stack modalities (pp.quantile_norm) read them from there
    modalities = {
        mod: {
            "varm": {f"{key_added}_{part}": factor},
            "var": {
                f"{key_added}_clusters": pd.Categorical(
                    np.argmax(factor, axis=1).astype(str), categories=feature_categories
                )
            },
            "obsm": {f"X_{key_added}": embedding[rows], f"{key_added}_C": raw[rows]},
        }
        for mod, factor, part, rows in (
            (mods[0], result.C_g, "C_g", rows_rna),
            (mods[1], result.C_r, "C_r", rows_atac),
        )
    }

    roles = ["shared"] * n_shared + ["rna_only"] * n_rna_only + ["atac_only"] * n_atac_only
    params = {
        "n_clusters": n_clusters,
        "n_shared": n_shared,
        "n_rna_only": n_rna_only,
        "n_atac_only": n_atac_only,
        "n_feature_clusters": M,
        "mods": list(mods),
        "gene_activity": gene_activity if isinstance(gene_activity, str) else "matrix",
        "weights": w,
        "center_couplings": bool(center_couplings),
        "init": init,
        "preprocess": preprocess,
        "max_iter": max_iter,
        "inner_steps": inner_steps,
        "lr": lr,
        "tol": tol,
        "n_restarts": n_restarts,
        "smooth": smooth,
        "smoothing": smoothing,
        "n_neighbors": n_neighbors,
        "device": resolved,
        "random_state": random_state if isinstance(random_state, int) else None,
        "n_iter": result.n_iter,
    }
    mdata = mdata.copy() if copy else mdata
    write_slots(
        mdata,
        key_added,
        obsm={f"X_{key_added}": embedding, f"{key_added}_C": raw},
        obs={f"{key_added}_clusters": pd.Categorical(labels, categories=categories)},
        modalities=modalities,
        uns={
            "Sigma_g": result.Sigma_g,
            "Sigma_r": result.Sigma_r,
            "cluster_roles": np.asarray(roles, dtype=object),
            "objective": float(result.loss),
            "terms": h5ad_safe(result.terms),
            "restart_objectives": np.asarray(result.restart_losses),
            "params": record_params(params),
            "history": history_frame(result.history),
        },
    )
    return mdata if copy else None

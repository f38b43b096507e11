"""``datasets.simulate_rna_atac``: simulated unpaired RNA and ATAC counts of shared cell types."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from mudata import MuData

from .._utils._random import get_rng
from .._utils._validation import check_number, check_positive_int


def simulate_rna_atac(
    *,
    n_rna: int = 600,
    n_atac: int = 600,
    n_types: int = 5,
    n_genes: int = 500,
    regions_per_gene: int = 3,
    n_extra_regions: int = 200,
    de_fraction: float = 0.2,
    de_effect: float = 1.5,
    atac_effect: float = 1.5,
    rna_types: Sequence[int] | None = None,
    atac_types: Sequence[int] | None = None,
    rna_depth: float = 2000.0,
    atac_depth: float = 0.15,
    noise: float = 0.3,
    rna_dropout: float = 0.1,
    atac_dropout: float = 0.3,
    random_state: int | np.random.Generator | None = 0,
) -> MuData:
    """Simulated unpaired scRNA-seq and scATAC-seq counts of shared cell types.

    A cell type is a set of up- and down-regulated genes; chromatin follows expression through a
    region-to-gene map, as in the SymSim extension used by scJMT (Zhang et al. 2021):

    1. ``n_genes`` genes on three chromosomes (10 kb bodies, 20 kb apart, random strand); every gene
       regulates ``regions_per_gene`` regions (500 bp peaks inside its body), plus
       ``n_extra_regions`` unlinked regions between genes.
    2. Per cell type, a fraction ``de_fraction`` of genes is differentially expressed: log-mean
       shifted by ``±de_effect`` around a gene baseline drawn from N(0, 1).
    3. RNA: per-modality gene noise (log-normal, sd ``noise``), per-cell library size around
       ``rna_depth``, Poisson counts, then each count zeroed with probability ``rna_dropout``.
    4. ATAC: a region's open probability is ``sigmoid(atac_effect · z)`` with ``z`` the linked
       gene's standardised type log-mean (unlinked regions: random), plus region noise of sd
       ``noise``; counts are Poisson with mean ``atac_depth · 5 · p`` per cell (depth varies per
       cell), each zeroed with probability ``atac_dropout``.

    ``rna_types`` / ``atac_types`` restrict a modality to some cell types (the paper's second
    scenario: RNA with 3 types, ATAC with 2 of them: ``rna_types=[0, 1, 2], atac_types=[1, 2]``).

    Parameters
    ----------
    n_rna, n_atac
        Number of RNA cells and ATAC cells (different cells; no pairing).
    n_types
        Number of cell types ``0 .. n_types - 1``.
    n_genes
        Number of genes.
    regions_per_gene
        Regions linked to each gene.
    n_extra_regions
        Regions linked to no gene (pure noise).
    de_fraction
        Fraction of genes differentially expressed in each cell type.
    de_effect
        Size of the log-fold change of differentially expressed genes.
    atac_effect
        How strongly accessibility follows the linked gene's expression.
    rna_types, atac_types
        Cell types present in each modality (all by default); cells are split evenly among them.
    rna_depth
        Mean RNA library size (UMIs per cell).
    atac_depth
        Scale of the ATAC counts per open region.
    noise
        Standard deviation of per-modality gene and region noise (log scale).
    rna_dropout, atac_dropout
        Probability that a count is lost.
    random_state
        Seed of the random number generator; the same seed gives the same data.

    Returns
    -------
    A :class:`~mudata.MuData` with modalities ``"rna"`` (cells x genes, CSR counts; ``var``
    columns ``chrom``, ``start``, ``end``, ``strand`` of the gene bodies, 0-based half-open) and
    ``"atac"`` (cells x regions, CSR counts, names ``chrN_start_end``), each with
    ``obs["cell_type"]`` (categorical). The true region-to-gene map is stored as
    :func:`scintegrate.pp.gene_activity` stores links: ``atac.varm["gene_activity"]`` (regions x
    genes CSR) with the gene names in ``atac.uns["gene_activity"]["genes"]``.
    """
    rng = get_rng(random_state)
    for value, name in (
        (n_rna, "n_rna"),
        (n_atac, "n_atac"),
        (n_types, "n_types"),
        (n_genes, "n_genes"),
        (regions_per_gene, "regions_per_gene"),
    ):
        check_positive_int(value, param=name)
    check_positive_int(n_extra_regions, param="n_extra_regions", minimum=0)
    for value, name in ((rna_dropout, "rna_dropout"), (atac_dropout, "atac_dropout")):
        if check_number(value, param=name, minimum=0, maximum=1) == 1:
            raise ValueError(f"{name} must be below 1 (every count would be lost), got {value!r}.")
    check_number(de_fraction, param="de_fraction", minimum=0, maximum=1, exclusive_minimum=True)
    for value, name in ((de_effect, "de_effect"), (atac_effect, "atac_effect")):
        check_number(value, param=name)
    for value, name in ((rna_depth, "rna_depth"), (atac_depth, "atac_depth")):
        check_number(value, param=name, minimum=0, exclusive_minimum=True)
    check_number(noise, param="noise", minimum=0)
    types_rna = _types(rna_types, n_types, "rna_types")
    types_atac = _types(atac_types, n_types, "atac_types")

    # genome: genes on three chromosomes, regions inside gene bodies, extra regions between genes
    chrom = np.array([f"chr{1 + i % 3}" for i in range(n_genes)], dtype=object)
    slot = np.arange(n_genes) // 3
    g_start = 10_000 + slot * 30_000
    g_end = g_start + 10_000
    strand = rng.choice(np.array(["+", "-"], dtype=object), n_genes)
    offsets = 500 + np.arange(regions_per_gene) * (9_000 // regions_per_gene)
    r_gene = np.repeat(np.arange(n_genes), regions_per_gene)
    r_start = g_start[r_gene] + np.tile(offsets, n_genes)
    r_chrom = chrom[r_gene]
    extra_gene = rng.integers(0, n_genes, n_extra_regions)
    e_start = g_end[extra_gene] + 5_000 + rng.integers(0, 9_000, n_extra_regions) // 500 * 500
    # one extra region per gap at most (unique coordinates)
    extra = pd.DataFrame({"g": extra_gene, "s": e_start}).drop_duplicates().to_numpy()
    all_start = np.concatenate([r_start, extra[:, 1]])
    all_chrom = np.concatenate([r_chrom, chrom[extra[:, 0]]])
    n_linked = len(r_start)
    n_regions = len(all_start)

    # expression programs
    base = rng.normal(0.0, 1.0, n_genes)
    shifts = np.zeros((n_types, n_genes))
    n_de = max(1, round(de_fraction * n_genes))
    for t in range(n_types):
        de = rng.choice(n_genes, n_de, replace=False)
        shifts[t, de] = rng.choice([-1.0, 1.0], n_de) * de_effect
    log_mean = base[None, :] + shifts
    z = (log_mean - log_mean.mean()) / log_mean.std()

    def cells_of(types, n):
        labels = np.sort(np.resize(types, n))
        return labels

    # RNA
    labels_rna = cells_of(types_rna, n_rna)
    gene_noise = rng.normal(0.0, noise, n_genes)
    rates = np.exp(log_mean[labels_rna] + gene_noise)
    rates /= rates.sum(1, keepdims=True)
    depth = rna_depth * rng.lognormal(0.0, 0.3, n_rna)
    rna = rng.poisson(rates * depth[:, None])
    rna = rna * (rng.random(rna.shape) >= rna_dropout)

    # ATAC
    labels_atac = cells_of(types_atac, n_atac)
    region_noise = rng.normal(0.0, noise, n_regions)
    logits = np.empty((n_types, n_regions))
    logits[:, :n_linked] = atac_effect * z[:, r_gene]
    logits[:, n_linked:] = rng.normal(-1.0, 0.5, n_regions - n_linked)[None, :]
    p_open = 1.0 / (1.0 + np.exp(-(logits + region_noise)))
    a_depth = atac_depth * 5 * rng.lognormal(0.0, 0.3, n_atac)
    atac = rng.poisson(p_open[labels_atac] * a_depth[:, None])
    atac = atac * (rng.random(atac.shape) >= atac_dropout)

    gene_names = np.array([f"gene{i}" for i in range(n_genes)], dtype=object)
    region_names = [f"{c}_{s}_{s + 500}" for c, s in zip(all_chrom, all_start, strict=True)]
    rna_ad = AnnData(
        sp.csr_matrix(rna.astype(np.float32)),
        obs=pd.DataFrame(
            {"cell_type": pd.Categorical(labels_rna.astype(str))},
            index=[f"rna{i}" for i in range(n_rna)],
        ),
        var=pd.DataFrame(
            {"chrom": chrom, "start": g_start, "end": g_end, "strand": strand},
            index=gene_names,
        ),
    )
    atac_ad = AnnData(
        sp.csr_matrix(atac.astype(np.float32)),
        obs=pd.DataFrame(
            {"cell_type": pd.Categorical(labels_atac.astype(str))},
            index=[f"atac{i}" for i in range(n_atac)],
        ),
        var=pd.DataFrame(index=region_names),
    )
    links = sp.csr_matrix(
        (np.ones(n_linked, np.float32), (np.arange(n_linked), r_gene)), shape=(n_regions, n_genes)
    )
    atac_ad.varm["gene_activity"] = links
    atac_ad.uns["gene_activity"] = {"genes": gene_names}
    return MuData({"rna": rna_ad, "atac": atac_ad})


def _types(types, n_types: int, name: str) -> np.ndarray:
    if types is None:
        return np.arange(n_types)
    arr = np.asarray(list(types))
    if (
        arr.ndim != 1
        or not len(arr)
        or not np.issubdtype(arr.dtype, np.integer)
        or arr.min() < 0
        or arr.max() >= n_types
        or len(np.unique(arr)) != len(arr)
    ):
        raise ValueError(
            f"{name} must list distinct cell types among 0 .. {n_types - 1}, got {types!r}."
        )
    return np.sort(arr)

"""What the Galaxy tools need beyond the command line's options: names, help, citations, which
parameters are shown outside "Advanced options", and the tests on galaxy/test-data.

Read by ``make_tools.py``; every option not named in ``basic`` goes to the advanced section, so a
new keyword parameter of a function needs no change here. The first test of each tool is the one
``tests/galaxy`` runs by default (keep it small); the others run with ``-m slow``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERSION_SUFFIX = 0  # bump when a tool changes but the scintegrate version does not

# Citations, checked against the papers' records (the numbers are not guessed): DOIs of the
# methods behind each tool; scJMT has no DOI, so BibTeX.
CITATIONS: dict[str, tuple[str, str]] = {
    "nmf": ("doi", "10.1038/44565"),  # Lee & Seung 1999, Nature
    "liger": ("doi", "10.1016/j.cell.2019.05.006"),  # Welch et al. 2019, Cell
    "uinmf": ("doi", "10.1038/s41467-022-28431-4"),  # Kriebel & Welch 2022, Nat Commun
    "online_inmf": ("doi", "10.1038/s41587-021-00867-x"),  # Gao et al. 2021, Nat Biotechnol
    "scetm": ("doi", "10.1038/s41467-021-25534-2"),  # Zhao et al. 2021, Nat Commun
    "mmdma": ("doi", "10.4230/LIPIcs.WABI.2019.10"),  # Liu et al. 2019, WABI
    "lsmmdma": ("doi", "10.1093/bioinformatics/btad420"),  # Meng-Papaxanthos et al. 2023
    "scjmt": (
        "bibtex",
        """
@misc{zhang2021scjmt,
  title = {Integrating unpaired {scRNA-seq} and {scATAC-seq} data with equal or unequal cell type compositions},
  author = {Zhang, Ziqi and Sun, Haoran and Mariappan, Ragunathan and Chen, Xi and Jain, Mika S. and Efremova, Mirjana and Teichmann, Sarah A. and Rajan, Vaibhav and Zhang, Xiuwei},
  year = {2021},
  note = {scJMT}
}
""",
    ),
    "scmomat": ("doi", "10.1038/s41467-023-36066-2"),  # Zhang et al. 2023, Nat Commun
    "signac": ("doi", "10.1038/s41592-021-01282-5"),  # Stuart et al. 2021, Nat Methods
    "archr": ("doi", "10.1038/s41588-021-00790-6"),  # Granja et al. 2021, Nat Genet
    "scanpy": ("doi", "10.1186/s13059-017-1382-0"),  # Wolf et al. 2018, Genome Biol
}

_FTYPES = {
    "h5ad": "h5ad",
    "h5mu": "h5mu",
    "h5": "h5",
    "pt": "binary",
    "npz": "npz",
    "txt": "txt",
    "bed": "bed",
}


@dataclass(frozen=True)
class File:
    """Test input file(s) of galaxy/test-data (several for a ``multiple`` data parameter)."""

    names: tuple[str, ...]
    ftype: str

    def __init__(self, *names: str, ftype: str | None = None) -> None:
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "ftype", ftype or _FTYPES[names[0].rsplit(".", 1)[1]])


@dataclass
class Test:
    params: dict[str, Any]
    outputs: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    function: str | None = None  # plot and metrics: the function chosen
    ftypes: dict[str, str] = field(default_factory=dict)  # output name -> expected datatype
    expect_exit_code: int | None = None
    stderr: tuple[str, ...] = ()

    @property
    def expect_num_outputs(self) -> int:
        return len(self.outputs)


@dataclass
class Function:
    basic: tuple[str, ...] = ()  # parameters shown outside the advanced section
    handled: dict[str, str] = field(default_factory=dict)  # options not offered, and why
    label: str = ""  # plot and metrics: the function's name in the select
    single: tuple[str, ...] = ()  # sequence options offered as one value (see UNAVAILABLE)


@dataclass
class Tool:
    command: str
    name: str
    description: str
    runner: str  # anndata | mudata | online_inmf | transform | etm | gene_activity | plot | metrics
    citations: tuple[str, ...]
    help: str
    tests: list[Test]
    functions: dict[str, Function]
    model: tuple[str, str] | None = None  # transform: the model's datatype and file name
    default_function: str | None = None
    function_label: str = "Function"


def h5(*keys: str) -> tuple[str, dict[str, Any]]:
    return ("has_h5_keys", {"keys": ",".join(keys)})


def size(minimum: int) -> tuple[str, dict[str, Any]]:
    return ("has_size", {"min": minimum})


def text(value: str) -> tuple[str, dict[str, Any]]:
    return ("has_text", {"text": value})


def line(expression: str) -> tuple[str, dict[str, Any]]:
    """A whole line matching ``expression`` (Galaxy anchors it at both ends)."""
    return ("has_line_matching", {"expression": expression})


def columns(n: int) -> tuple[str, dict[str, Any]]:
    return ("has_n_columns", {"n": n})


def png() -> tuple[str, dict[str, Any]]:
    """A PNG's header chunk (Galaxy's image assertions need tifffile, which the tests here do
    not install)."""
    return ("has_text", {"text": "IHDR"})


# Commands the command line offers but that cannot work from Galaxy yet, and why; tests/galaxy
# checks that the reason still holds (a strict xfail), so that they are added once it is fixed.
# commands left out of the tools, and why
UNAVAILABLE: dict[str, str] = {
    "metrics scib": "needs the optional scib-metrics (JAX), which the tools' one requirement, "
    "the scintegrate package, does not bring",
}

PARAMS = "uns/{}/params/command_line"  # written by the command line into every tool's record

_MOD_HELP = """
An h5mu input needs the modality to work on (e.g. ``rna``); the other modalities are copied to
the output unchanged."""

TOOLS: list[Tool] = [
    Tool(
        command="nmf",
        name="scintegrate NMF",
        description="of a count matrix: cell factors and feature loadings",
        runner="anndata",
        citations=("nmf",),
        help="""
**Input**: an AnnData of counts (or a MuData and a modality).

**Output**: the same data with the cell factors in ``obsm["X_<key>"]`` (cells x k), the feature
loadings in ``varm["<key>_W"]`` (features x k) and the parameters and training history in
``uns["<key>"]``. With an obs column of known labels, the history also records the ARI and NMI
of Leiden clusters of the factors (see the training-curve plot).
"""
        + _MOD_HELP,
        functions={"": Function(basic=("n_components", "layer", "objective", "labels_key"))},
        tests=[
            Test(
                {"input": File("cortex_rna.h5ad"), "n_components": 3, "max_iter": 5},
                {
                    "output": [
                        h5("obsm/X_nmf", "varm/nmf_W", "uns/nmf/history", PARAMS.format("nmf"))
                    ]
                },
                ftypes={"output": "h5ad"},
            ),
            Test(
                {
                    "input": File("cortex_rna_atac.h5ad"),
                    "n_components": 3,
                    "objective": "kl",
                    "labels_key": "cell_type",
                    "max_iter": 4,
                    "track_every": 2,
                    "key_added": "nmf_kl",
                },
                {"output": [h5("obsm/X_nmf_kl", "varm/nmf_kl_W", "uns/nmf_kl/history/ari")]},
                ftypes={"output": "h5ad"},
            ),
            Test(
                {"input": File("celllines.h5mu"), "n_components": 3},
                expect_exit_code=2,
                stderr=("choose one with --mod",),
            ),
            Test(
                {"input": File("celllines.h5mu"), "mod": "atac", "n_components": 2, "max_iter": 3},
                {"output": [h5("mod/atac/obsm/X_nmf", "mod/rna/X")]},
                ftypes={"output": "h5mu"},
            ),
        ],
    ),
    Tool(
        command="inmf",
        name="scintegrate iNMF",
        description="integrative NMF of several datasets (LIGER)",
        runner="anndata",
        citations=("liger", "online_inmf"),
        help="""
**Input**: an AnnData holding every dataset, with an obs column naming each cell's dataset,
preprocessed by the *scintegrate LIGER preprocessing* tool (the scaled layer and the selected
genes are read from it by default).

**Output**: shared and dataset-specific factors: ``obsm["X_<key>"]`` (cells x k), the shared
gene loadings ``varm["<key>_W"]``, the dataset-specific loadings ``varm["<key>_V"]`` and the
record in ``uns["<key>"]``. Align the factors with the *scintegrate quantile normalisation*
tool.
"""
        + _MOD_HELP,
        functions={"": Function(basic=("n_components", "batch_key", "lambda_"))},
        tests=[
            Test(
                {
                    "input": File("cortex_liger.h5ad"),
                    "n_components": 3,
                    "batch_key": "modality",
                    "max_iter": 3,
                },
                {
                    "output": [
                        h5("obsm/X_inmf", "varm/inmf_W", "varm/inmf_V", PARAMS.format("inmf"))
                    ]
                },
                ftypes={"output": "h5ad"},
            )
        ],
    ),
    Tool(
        command="online-inmf",
        name="scintegrate online iNMF",
        description="integrative NMF by mini-batches, for large or arriving datasets",
        runner="online_inmf",
        citations=("online_inmf", "liger"),
        help="""
**Input**: either one file holding every dataset (with an obs column naming each cell's
dataset), or several AnnData files, one per dataset, which are read from disk in mini-batches
(the memory used does not grow with the number of cells). Each file's name (Galaxy's dataset
name, made safe for a file name) names its dataset in the model. Raw counts are normalised and
scaled on the fly unless the scaled layer of the *scintegrate LIGER preprocessing* tool is
present.

**Output**: the cell factors in ``obsm["X_<key>"]`` and the record in ``uns["<key>"]``; with
several input files the output holds all their cells. Optionally the trained model (HDF5), to
project new cells with *scintegrate online iNMF projection* or to continue training here with
new datasets (scenario 2 of the paper) by giving it as "Continue training this model".
""",
        functions={
            "": Function(
                basic=("n_components", "batch_key", "lambda_", "max_epochs", "batch_size"),
                handled={
                    "write_scaled": "writes files to a server folder; Galaxy keeps only declared outputs",
                    "scheduler": "a Dask cluster is the Galaxy server's business, not a tool form's",
                },
            )
        },
        tests=[
            Test(
                {
                    "inputs": File("cortex_rna.h5ad", "cortex_atac_activity.h5ad"),
                    "model_out": True,
                    "n_components": 3,
                    "max_epochs": 1,
                    "batch_size": 60,
                },
                {
                    "output": [h5("obsm/X_inmf", PARAMS.format("inmf"))],
                    "model": [h5("W", "V", "scaling/cortex_rna", "scaling/cortex_atac_activity")],
                },
                ftypes={"output": "h5ad", "model": "h5"},
            ),
            Test(
                {
                    "inputs": File("cortex_liger.h5ad"),
                    "batch_key": "modality",
                    "n_components": 3,
                    "max_epochs": 2,
                    "batch_size": 50,
                },
                {"output": [h5("obsm/X_inmf", "layers/liger_scaled")]},
                ftypes={"output": "h5ad"},
            ),
            Test(
                {
                    "inputs": File("cortex_atac_activity.h5ad"),
                    "model_in": File("online_inmf_model.h5"),
                    "max_epochs": 1,
                    "batch_size": 50,
                },
                {"output": [h5("obsm/X_inmf")]},
                ftypes={"output": "h5ad"},
            ),
        ],
    ),
    Tool(
        command="online-inmf-project",
        name="scintegrate online iNMF projection",
        description="of new cells onto a trained model",
        runner="transform",
        model=("h5", "model.h5"),
        citations=("online_inmf", "liger"),
        help="""
**Input**: cells (raw counts or the scaled layer) and a model saved by *scintegrate online
iNMF*. The model is not changed (scenario 3 of the paper).

**Output**: the cells' factors in ``obsm["X_<key>"]`` and the record in ``uns["<key>"]``.
"""
        + _MOD_HELP,
        functions={"": Function(basic=("dataset", "batch_key", "key_added"))},
        tests=[
            Test(
                {
                    "input": File("cortex_atac_activity.h5ad"),
                    "model_in": File("online_inmf_model.h5"),
                },
                {"output": [h5("obsm/X_inmf", PARAMS.format("inmf"))]},
                ftypes={"output": "h5ad"},
            )
        ],
    ),
    Tool(
        command="etm",
        name="scintegrate scETM",
        description="embedded topic model of single-cell counts",
        runner="etm",
        citations=("scetm",),
        help="""
**Input**: an AnnData of raw counts (or a MuData and a modality); an obs column of batches adds
the batch intercepts.

**Output**: the topic mixtures in ``obsm["X_<key>"]`` (cells x topics), gene and topic
embeddings in ``varm``/``uns`` and the training history in ``uns["<key>"]``. Optionally the
trained model, to embed new cells with *scintegrate scETM embedding*.

Training runs on a GPU when the job has one (device ``auto``), else on the CPU.
"""
        + _MOD_HELP,
        functions={
            "": Function(basic=("n_topics", "layer", "batch_key", "max_epochs", "labels_key"))
        },
        tests=[
            Test(
                {
                    "input": File("cortex_rna.h5ad"),
                    "model_out": True,
                    "n_topics": 3,
                    "max_epochs": 2,
                    "emb_dim": 8,
                    "hidden_sizes": "16",
                    "batch_size": 60,
                    "device": "cpu",
                },
                {"output": [h5("obsm/X_etm", PARAMS.format("etm"))], "model": [size(5000)]},
                ftypes={"output": "h5ad", "model": "binary"},
            )
        ],
    ),
    Tool(
        command="etm-embed",
        name="scintegrate scETM embedding",
        description="of new cells by a trained model",
        runner="transform",
        model=("binary", "model.pt"),
        citations=("scetm",),
        help="""
**Input**: cells (raw counts over the model's genes) and a model saved by *scintegrate scETM*.
The model is not changed.

**Output**: the cells' topic mixtures in ``obsm["X_<key>"]`` and the record in ``uns["<key>"]``.
"""
        + _MOD_HELP,
        functions={"": Function(basic=("batch_key", "key_added"))},
        tests=[
            Test(
                {
                    "input": File("cortex_rna.h5ad"),
                    "model_in": File("etm_model.pt"),
                    "device": "cpu",
                },
                {"output": [h5("obsm/X_etm", PARAMS.format("etm"))]},
                ftypes={"output": "h5ad"},
            )
        ],
    ),
    Tool(
        command="mmdma",
        name="scintegrate MMD-MA",
        description="embed two modalities of different cells in one space",
        runner="mudata",
        citations=("mmdma", "lsmmdma"),
        help="""
**Input**: a MuData with the two modalities (measured on different cells, or on the same cells
without using the pairing), as features or as a representation in ``obsm`` of each.

**Output**: the shared embedding of each modality's cells in ``mod[<mod>].obsm["X_<key>"]``, both
stacked in ``obsm["X_<key>"]`` of the MuData, and the record in ``uns["<key>"]``. Score it with
the FOSCTTM metric when the cells are paired.

Training runs on a GPU when the job has one (device ``auto``), else on the CPU.
""",
        functions={"": Function(basic=("n_dims", "mods", "use_rep", "max_epochs"))},
        tests=[
            Test(
                {
                    "input": File("celllines.h5mu"),
                    "n_dims": 2,
                    "max_epochs": 5,
                    "backend": "torch",
                    "device": "cpu",
                },
                {"output": [h5("obsm/X_mmdma", "mod/rna/obsm/X_mmdma", "mod/atac/obsm/X_mmdma")]},
                ftypes={"output": "h5mu"},
            )
        ],
    ),
    Tool(
        command="scjmt",
        name="scintegrate scJMT",
        description="joint tri-factorisation of unpaired RNA and ATAC",
        runner="mudata",
        citations=("scjmt", "scmomat"),
        help="""
**Input**: a MuData with an RNA and an ATAC modality of different cells, the ATAC modality
holding the gene x region links written by the *scintegrate gene activity* tool (its ``varm``
key is the "gene activity" parameter).

**Output**: the cells' cluster factors in ``obsm["X_<key>"]`` and ``obsm["<key>_C"]`` and the
record (gene and region clusters, the association matrices) in ``uns["<key>"]``.

The method is scJMT (Zhang et al. 2021); its authors' published successor for mosaic
integration by matrix tri-factorisation is scMoMaT (Zhang et al. 2023), cited with it.
""",
        functions={
            "": Function(
                basic=(
                    "n_clusters",
                    "mods",
                    "gene_activity",
                    "n_shared",
                    "n_rna_only",
                    "n_atac_only",
                )
            )
        },
        tests=[
            Test(
                {
                    "input": File("cortex_rna_peaks_links.h5mu"),
                    "n_clusters": 3,
                    "max_iter": 2,
                    "n_restarts": 1,
                    "inner_steps": 1,
                    "device": "cpu",
                },
                {"output": [h5("obsm/X_scjmt", "obsm/scjmt_C")]},
                ftypes={"output": "h5mu"},
            )
        ],
    ),
    Tool(
        command="liger-preprocess",
        name="scintegrate LIGER preprocessing",
        description="normalise, select genes and scale each dataset for iNMF",
        runner="anndata",
        citations=("liger",),
        help="""
**Input**: an AnnData of raw counts of every dataset, with an obs column naming each cell's
dataset.

**Output**: the same data with the normalised, scaled (not centred) matrix in the layer
``liger_scaled`` (all genes), the selected genes in the var column ``<key>`` and the per-dataset
statistics in ``varm``/``uns``; the input of *scintegrate iNMF* and *scintegrate online iNMF*.
"""
        + _MOD_HELP,
        functions={"": Function(basic=("batch_key", "layer", "var_thresh", "n_genes"))},
        tests=[
            Test(
                {"input": File("cortex_rna_atac.h5ad"), "batch_key": "modality", "var_thresh": 0.0},
                {
                    "output": [
                        h5(
                            "layers/liger_scaled",
                            "var/liger_highly_variable",
                            PARAMS.format("liger_highly_variable"),
                        )
                    ]
                },
                ftypes={"output": "h5ad"},
            )
        ],
    ),
    Tool(
        command="quantile-norm",
        name="scintegrate quantile normalisation",
        description="align iNMF factors across datasets (LIGER)",
        runner="anndata",
        citations=("liger", "online_inmf"),
        help="""
**Input**: an AnnData with non-negative cell factors (e.g. ``obsm["X_inmf"]`` of *scintegrate
iNMF* or *scintegrate online iNMF*) and an obs column naming each cell's dataset.

**Output**: the aligned factors in ``obsm["X_<key>"]``, the cells' clusters in the obs column
``<key>_clusters`` and the record in ``uns["<key>"]``.
"""
        + _MOD_HELP,
        functions={"": Function(basic=("use_rep", "batch_key", "reference"))},
        tests=[
            Test(
                {"input": File("cortex_inmf.h5ad"), "batch_key": "modality", "min_cells": 5},
                {"output": [h5("obsm/X_inmf_qn", PARAMS.format("inmf_qn"))]},
                ftypes={"output": "h5ad"},
            )
        ],
    ),
    Tool(
        command="liger-unshared",
        name="scintegrate LIGER unshared features",
        description="mark and select the features only one dataset has (UINMF)",
        runner="anndata",
        citations=("uinmf", "liger"),
        help="""
**Input**: raw counts of every dataset's features in one AnnData (a feature a dataset does not
measure is zero there), an obs column naming each cell's dataset, and a var column naming the
dataset that owns each unshared feature (empty for shared features).

**Output**: the unshared features marked (var column ``<key>``, the owning dataset) and their
variable ones selected per owner (var column ``<key>_highly_variable``): with the scaled layer of
*scintegrate LIGER preprocessing*, the input of *scintegrate UINMF*.
"""
        + _MOD_HELP,
        functions={"": Function(basic=("batch_key", "features"))},
        tests=[
            Test(
                {
                    "input": File("cortex_mosaic.h5ad"),
                    "batch_key": "modality",
                    "features": "measured_in",
                    "var_thresh": 0.0,
                },
                {
                    "output": [
                        h5("var/liger_unshared_highly_variable", PARAMS.format("liger_unshared"))
                    ]
                },
                ftypes={"output": "h5ad"},
            )
        ],
    ),
    Tool(
        command="uinmf",
        name="scintegrate UINMF",
        description="integrative NMF with unshared features (LIGER)",
        runner="anndata",
        citations=("uinmf", "liger"),
        help="""
**Input**: an AnnData prepared by *scintegrate LIGER preprocessing* (shared features) and
*scintegrate LIGER unshared features* (the features only one dataset has), with an obs column
naming each cell's dataset.

**Output**: the cell factors in ``obsm["X_<key>"]``, the shared, dataset-specific and unshared
loadings in ``varm["<key>_W"]``, ``varm["<key>_V"]`` and ``varm["<key>_U"]``, and the record in
``uns["<key>"]``.
"""
        + _MOD_HELP,
        functions={"": Function(basic=("n_components", "batch_key", "lambda_"))},
        tests=[
            Test(
                {
                    "input": File("cortex_mosaic_scaled.h5ad"),
                    "batch_key": "modality",
                    "n_components": 3,
                    "max_iter": 3,
                },
                {"output": [h5("obsm/X_uinmf", "varm/uinmf_U", PARAMS.format("uinmf"))]},
                ftypes={"output": "h5ad"},
            )
        ],
    ),
    Tool(
        command="centroid-align",
        name="scintegrate centroid alignment",
        description="align iNMF factors across datasets by cluster centroids (LIGER)",
        runner="anndata",
        citations=("liger", "online_inmf"),
        help="""
**Input**: an AnnData with non-negative cell factors (e.g. ``obsm["X_inmf"]``) and an obs column
naming each cell's dataset.

**Output**: the aligned factors in ``obsm["X_<key>"]``, the cells' clusters in the obs column
``<key>_clusters`` and the record in ``uns["<key>"]``. A faster alternative to quantile
normalisation (rliger 2.1's centroidAlign).
"""
        + _MOD_HELP,
        functions={"": Function(basic=("use_rep", "batch_key", "reference"))},
        tests=[
            Test(
                {"input": File("cortex_inmf.h5ad"), "batch_key": "modality"},
                {"output": [h5("obsm/X_inmf_ca", PARAMS.format("inmf_ca"))]},
                ftypes={"output": "h5ad"},
            )
        ],
    ),
    Tool(
        command="factor-markers",
        name="scintegrate factor markers",
        description="shared and dataset-specific marker genes of iNMF factors (LIGER)",
        runner="anndata",
        citations=("liger",),
        help="""
**Input**: an AnnData integrated by *scintegrate iNMF* or *online iNMF* (``varm["<key>_W"]``,
``varm["<key>_V"]``, the cell factors and the expression matrix) and the obs column naming each
cell's dataset.

**Output**: the marker tables (shared, and specific to each of the two datasets) in
``uns["<key_added>"]`` and each cell's largest factor in the obs column ``<key_added>_clusters``.
"""
        + _MOD_HELP,
        functions={"": Function(basic=("key", "batch_key", "datasets", "n_genes"))},
        tests=[
            Test(
                {"input": File("cortex_inmf.h5ad"), "batch_key": "modality"},
                {"output": [h5("uns/inmf_markers/shared", PARAMS.format("inmf_markers"))]},
                ftypes={"output": "h5ad"},
            )
        ],
    ),
    Tool(
        command="gene-activity",
        name="scintegrate gene activity",
        description="ATAC peak counts summed per gene",
        runner="gene_activity",
        citations=("signac", "archr"),
        help="""
**Input**: ATAC peak counts, as an AnnData (cells x peaks) or as a MuData with the peaks in the
modality ``mod``, and either a gene annotation (GTF/GFF, BED6, or a table with a header) or a
ready genes x peaks link matrix (npz) with its gene names. The peaks' coordinates are read from
var columns (chrom/start/end) or from peak names such as ``chr1_3094708_3095552``.

**Output**: for an AnnData, a new AnnData of gene activities (cells x genes) with the links in
``uns``; for a MuData, the same MuData with the activities added as the modality ``<key>`` and
the links in the peak modality's ``varm["<key>"]`` (the input of *scintegrate scJMT*).
""",
        functions={
            "": Function(
                basic=("mod", "rule"),
                handled={
                    "annotation": "a data input (GTF, GFF, BED or table), in the conditional above",
                    "genes": "a data input (one name per line), in the conditional above",
                },
            )
        },
        tests=[
            Test(
                {
                    "input": File("cortex_peaks.h5ad"),
                    "features": {
                        "source": "links",
                        "links": File("links.npz"),
                        "genes": File("link_genes.txt"),
                    },
                },
                {"output": [h5("X", "obs", PARAMS.format("gene_activity"))]},
                ftypes={"output": "h5ad"},
            ),
            Test(
                {
                    "input": File("cortex_rna_peaks_links.h5mu"),
                    "features": {"source": "annotation", "annotation": File("linked_genes.bed")},
                    "key_added": "activity",
                },
                {"output": [h5("mod/activity/X", "mod/atac/varm/activity", "mod/rna/X")]},
                ftypes={"output": "h5mu"},
            ),
        ],
    ),
    Tool(
        command="plot",
        name="scintegrate plot",
        description="of an integration: embeddings, training curves, factors",
        runner="plot",
        citations=("scanpy",),
        function_label="Plot",
        default_function="umap",
        help="""
**Input**: an AnnData (or a MuData and a modality) written by one of the scintegrate tools;
``key`` is the tool's key (e.g. ``inmf``, ``etm``, ``nmf``).

**Output**: the figure as PNG, SVG or PDF. UMAP and t-SNE coordinates are computed on the fly
(they are not written back to the data).
""",
        functions={
            "umap": Function(basic=("key", "color"), label="UMAP of the factors"),
            "tsne": Function(basic=("key", "color"), label="t-SNE of the factors"),
            "training-curve": Function(basic=("key", "y", "y2", "x"), label="Training curve"),
            "factor-heatmap": Function(
                basic=("key", "groupby", "normalize"), label="Heatmap of the cell factors by group"
            ),
            "top-features": Function(
                basic=("key", "n_top"), label="Heatmap of the top features of each factor"
            ),
            "gene-loadings": Function(
                basic=("key", "factor", "n_top", "markers_key"),
                label="Shared and dataset-specific loadings of a factor's top genes",
            ),
            "proportions": Function(
                basic=("groupby", "batch_key", "bars"), label="Cluster composition per dataset"
            ),
            "delta-w": Function(basic=("key", "x"), label="Change of W during online iNMF"),
        },
        tests=[
            Test(
                {
                    "input": File("cortex_inmf.h5ad"),
                    "key": "inmf",
                    "y": "objective",
                    "y2": "none",
                    "x": "iteration",
                },
                {"figure": [size(5000), png()]},
                function="training-curve",
                ftypes={"figure": "png"},
            ),
            Test(
                {
                    "input": File("cortex_inmf.h5ad"),
                    "key": "inmf",
                    "color": "cell_type,modality",
                    "n_neighbors": 10,
                },
                {"figure": [size(10000), png()]},
                function="umap",
                ftypes={"figure": "png"},
            ),
            Test(
                {
                    "input": File("cortex_inmf.h5ad"),
                    "key": "inmf",
                    "color": "cell_type",
                    "perplexity": 10,
                    "output_format": "svg",
                },
                {"figure": [text("<svg")]},
                function="tsne",
                ftypes={"figure": "svg"},
            ),
            Test(
                {
                    "input": File("cortex_inmf.h5ad"),
                    "key": "inmf",
                    "groupby": "cell_type",
                    "output_format": "pdf",
                },
                {"figure": [size(2000)]},
                function="factor-heatmap",
                ftypes={"figure": "pdf"},
            ),
            Test(
                {"input": File("cortex_inmf.h5ad"), "key": "inmf", "n_top": 3, "dpi": 60},
                {"figure": [size(2000), png()]},
                function="top-features",
                ftypes={"figure": "png"},
            ),
        ],
    ),
    Tool(
        command="metrics",
        name="scintegrate metrics",
        description="score an integration: cluster agreement, mixing, pairing",
        runner="metrics",
        citations=("liger", "mmdma"),
        function_label="Metric",
        default_function="ari",
        help="""
**Input**: an AnnData (or a MuData) written by one of the scintegrate tools. The pairing metrics
(FOSCTTM, neighbourhood overlap, label transfer) compare two sets of cells: two modalities of a
MuData, or two values of an obs column ("batch key") of an AnnData; "pair key" names the obs
column that pairs a cell of one part with its counterpart in the other.

**Output**: a table (one row per score; TSV) or a JSON record with the scores, the parameters
and the command line.
""",
        functions={
            "ari": Function(
                basic=("labels", "use_rep", "resolution"), label="ARI of Leiden clusters"
            ),
            "nmi": Function(
                basic=("labels", "use_rep", "resolution"), label="NMI of Leiden clusters"
            ),
            "cluster-agreement": Function(
                basic=("labels", "use_rep", "resolution"), label="ARI and NMI per resolution"
            ),
            "alignment-score": Function(
                basic=("batches", "use_rep"), label="Alignment score (LIGER)"
            ),
            "agreement": Function(
                basic=("batches", "use_rep", "layer", "mask_var"), label="Agreement (LIGER)"
            ),
            "purity": Function(basic=("labels_true", "labels_pred"), label="Cluster purity"),
            "adjusted-rand-index": Function(
                basic=("labels_true", "labels_pred"), label="ARI of two obs columns"
            ),
            "normalized-mutual-info": Function(
                basic=("labels_true", "labels_pred"), label="NMI of two obs columns"
            ),
            "dataset-specificity": Function(
                basic=("key", "datasets"), label="Dataset specificity of iNMF factors (LIGER)"
            ),
            "foscttm": Function(
                basic=("use_rep", "batch_key", "pair_key"), label="FOSCTTM of paired cells"
            ),
            "neighborhood-overlap": Function(
                basic=("use_rep", "batch_key", "pair_key", "n_neighbors"),
                label="Neighbourhood overlap of paired cells",
            ),
            "label-transfer-accuracy": Function(
                basic=("use_rep", "batch_key", "pair_key", "n_neighbors"),
                label="Label transfer accuracy",
            ),
        },
        tests=[
            Test(
                {
                    "input": File("celllines_mmdma.h5ad"),
                    "use_rep": "X_mmdma",
                    "parts": "rna,atac",
                    "batch_key": "modality",
                    "pair_key": "barcode",
                    "output_format": "json",
                },
                {
                    "scores": [
                        text('"metric": "foscttm"'),
                        text('"command_line": "scintegrate metrics foscttm'),
                    ]
                },
                function="foscttm",
                ftypes={"scores": "json"},
            ),
            Test(
                {
                    "input": File("cortex_inmf.h5ad"),
                    "labels": "cell_type",
                    "use_rep": "X_inmf",
                    "resolution": "0.5,1",
                },
                {"scores": [line(r"ari\t[0-9.e-]+"), columns(2)]},
                function="ari",
                ftypes={"scores": "tabular"},
            ),
            Test(
                {"input": File("cortex_inmf.h5ad"), "batches": "modality", "use_rep": "X_inmf"},
                {"scores": [line(r"alignment-score\t[0-9.e-]+")]},
                function="alignment-score",
                ftypes={"scores": "tabular"},
            ),
            Test(
                {
                    "input": File("celllines_mmdma.h5ad"),
                    "use_rep": "X_mmdma",
                    "parts": "rna,atac",
                    "batch_key": "modality",
                    "labels_x": "cell_type",
                    "labels_y": "cell_type",
                },
                {"scores": [line(r"label-transfer-accuracy\t[0-9.e-]+")]},
                function="label-transfer-accuracy",
                ftypes={"scores": "tabular"},
            ),
            Test(
                {
                    "input": File("celllines_mmdma.h5ad"),
                    "use_rep": "X_mmdma",
                    "parts": "rna,atac",
                    "batch_key": "modality",
                    "pair_key": "barcode",
                    "n_neighbors": 5,
                },
                {"scores": [line(r"neighborhood-overlap\t[0-9.e-]+")]},
                function="neighborhood-overlap",
                ftypes={"scores": "tabular"},
            ),
        ],
    ),
]

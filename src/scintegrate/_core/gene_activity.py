"""Region-to-gene links from genomic coordinates: parsing and a sorted sweep per chromosome.

Arrays in, arrays out. Coordinates are 0-based, half-open ``[start, end)`` (the BED convention);
GTF/GFF files (1-based, closed) are converted when read. A peak and a gene domain overlap when
``peak_start < domain_end`` and ``domain_start < peak_end``.

Rules (``rule=``), for a gene with body ``[lo, hi)`` and transcription start site (TSS) at ``lo``
on the ``+`` strand and at ``hi`` on the ``-`` strand:

``"gene_body"``
    Domain: the body extended ``upstream`` bp upstream of the TSS and ``downstream`` bp past
    the gene end (strand-aware); weight 1 for every overlapping peak (Signac / SnapATAC2).
``"promoter"``
    Domain: ``upstream`` bp upstream to ``downstream`` bp downstream of the TSS; weight 1.
``"distance"``
    ArchR-like: the gene region is the body extended ``upstream`` bp upstream of the TSS; a peak
    at gap distance ``d`` from it (0 when they overlap) gets weight ``exp(-d / decay) + exp(-1)``.
    Peaks are linked up to ``max_distance`` bp on either side, but never past the nearest
    neighbouring gene region on the same chromosome (the domain of a gene stops at the end of
    the previous gene region and at the start of the next one; a neighbour that overlaps the
    gene region stops the extension at the region itself).
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

RULES = ("gene_body", "promoter", "distance")
# (upstream, downstream) defaults of every rule
RULE_DEFAULTS = {"gene_body": (2000, 0), "promoter": (1000, 100), "distance": (5000, 0)}

_PEAK_RE = re.compile(r"^(.+)[_:](\d+)[_-](\d+)$")


@dataclass
class Intervals:
    """Intervals on chromosomes, 0-based half-open."""

    chrom: np.ndarray  # object array of chromosome names
    start: np.ndarray  # int64
    end: np.ndarray  # int64


@dataclass
class Genes(Intervals):
    """Gene bodies with strand (``+1`` / ``-1``) and names."""

    strand: np.ndarray  # int8, +1 or -1
    name: np.ndarray  # object array


# ---------------------------------------------------------------------------------- parsing
def parse_peak_names(names) -> Intervals:
    """Coordinates from names such as ``chr1_3094484_3095479`` or ``chr1:3094484-3095479``."""
    names = pd.Index(names).astype(str)
    parts = names.str.extract(_PEAK_RE)
    bad = parts[0].isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"Peak name {names[i]!r} (position {i}) is not a genomic interval; expected "
            "'chrom_start_end' or 'chrom:start-end', e.g. 'chr1_3094484_3095479'. Give the "
            "coordinates as var columns instead (var_coords=('chrom', 'start', 'end'))."
        )
    return check_intervals(
        parts[0].to_numpy(dtype=object),
        parts[1].to_numpy(dtype=np.int64),
        parts[2].to_numpy(dtype=np.int64),
        labels=names,
        what="Peak",
    )


def check_intervals(chrom, start, end, *, labels, what: str) -> Intervals:
    """Validate coordinates: integers, start >= 0 and start < end."""
    start = np.asarray(start)
    end = np.asarray(end)
    for arr, col in ((start, "start"), (end, "end")):
        if not np.issubdtype(arr.dtype, np.number) or (
            np.issubdtype(arr.dtype, np.floating)
            and not (np.isfinite(arr).all() and np.all(arr == np.round(arr)))
        ):
            bad = _first_bad_number(arr)
            raise ValueError(
                f"{what} {labels[bad]!r} (position {bad}) has a {col} coordinate that is not an "
                f"integer ({arr[bad]!r}); coordinates must be whole base-pair positions."
            )
    start = start.astype(np.int64)
    end = end.astype(np.int64)
    bad = np.flatnonzero((start < 0) | (end <= start))
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{what} {labels[i]!r} (position {i}) has start={start[i]} and end={end[i]}; "
            "coordinates must satisfy 0 <= start < end."
        )
    chrom = np.asarray(chrom, dtype=object).astype(str).astype(object)
    return Intervals(chrom, start, end)


def _first_bad_number(arr) -> int:
    for i, v in enumerate(arr):
        try:
            f = float(v)
        except (TypeError, ValueError):
            return i
        if not np.isfinite(f) or f != round(f):
            return i
    return 0


_GTF_ATTR = re.compile(r'(\w+)\s+"([^"]*)"')
_GFF_ATTR = re.compile(r"(\w+)=([^;]*)")


def read_gtf(path, *, feature: str = "gene", name_attr: str = "gene_name") -> Genes:
    """Genes of a GTF or GFF3 file (optionally gzipped); 1-based closed coordinates converted.

    Only rows whose third column equals ``feature`` are kept; the name is the attribute
    ``name_attr`` (GTF ``gene_name "X";`` or GFF3 ``gene_name=X;``, falling back to ``Name``,
    then ``gene_id``/``ID``). Every non-comment line must have 9 tab-separated columns, integer
    start <= end and strand ``+``, ``-`` or ``.``; a bad line raises a ValueError naming it.
    Genes without strand (``.``) are refused when they are of the selected feature type.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    chrom, start, end, strand, name = [], [], [], [], []
    with opener(path, "rt") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.rstrip("\n\r").split("\t")
            where = f"{path.name} line {lineno}: {line.strip()[:120]!r}"
            if len(fields) != 9:
                raise ValueError(
                    f"Malformed GTF/GFF {where} has {len(fields)} tab-separated columns, "
                    "expected 9 (seqname, source, feature, start, end, score, strand, frame, "
                    "attributes)."
                )
            if fields[2] != feature:
                continue
            try:
                lo, hi = int(fields[3]), int(fields[4])
            except ValueError:
                raise ValueError(
                    f"Malformed GTF/GFF {where}: start {fields[3]!r} and end {fields[4]!r} must "
                    "be integers."
                ) from None
            if lo < 1 or hi < lo:
                raise ValueError(
                    f"Malformed GTF/GFF {where}: needs 1 <= start <= end (1-based, closed)."
                )
            if fields[6] not in ("+", "-"):
                raise ValueError(
                    f"Malformed GTF/GFF {where}: strand {fields[6]!r} must be '+' or '-' for a "
                    f"{feature!r} row (gene activity is strand-aware)."
                )
            attrs = dict(_GTF_ATTR.findall(fields[8])) or dict(_GFF_ATTR.findall(fields[8]))
            gene = next(
                (attrs[k] for k in (name_attr, "Name", "gene_id", "ID") if attrs.get(k)), None
            )
            if gene is None:
                raise ValueError(
                    f"Malformed GTF/GFF {where}: no {name_attr!r}, 'Name', 'gene_id' or 'ID' "
                    "attribute gives the gene name."
                )
            chrom.append(fields[0])
            start.append(lo - 1)
            end.append(hi)
            strand.append(1 if fields[6] == "+" else -1)
            name.append(gene)
    if not chrom:
        raise ValueError(f"{path} has no rows of feature type {feature!r}.")
    return Genes(
        np.asarray(chrom, dtype=object),
        np.asarray(start, dtype=np.int64),
        np.asarray(end, dtype=np.int64),
        np.asarray(strand, dtype=np.int8),
        np.asarray(name, dtype=object),
    )


_COLUMNS = {
    "chrom": ("chrom", "chr", "chromosome", "seqname", "seqnames", "contig"),
    "start": ("start", "chromstart", "txstart", "gene_start"),
    "end": ("end", "chromend", "txend", "gene_end"),
    "strand": ("strand",),
    "name": ("gene_name", "gene", "name", "symbol", "gene_id"),
}


def genes_from_frame(frame: pd.DataFrame, *, what: str = "annotation") -> Genes:
    """Genes of a table with chrom, start, end, strand and gene name columns (any case)."""
    lower = {str(c).lower(): c for c in frame.columns}
    cols = {}
    for key, options in _COLUMNS.items():
        found = next((lower[o] for o in options if o in lower), None)
        if found is None:
            raise ValueError(
                f"The {what} has no {key} column (looked for {', '.join(options)}; columns: "
                f"{', '.join(map(str, frame.columns))})."
            )
        cols[key] = found
    names = frame[cols["name"]].astype(str).to_numpy(dtype=object)
    labels = [f"{n} (row {i})" for i, n in enumerate(names)]
    iv = check_intervals(
        frame[cols["chrom"]].to_numpy(),
        frame[cols["start"]].to_numpy(),
        frame[cols["end"]].to_numpy(),
        labels=labels,
        what="Gene",
    )
    strand_raw = frame[cols["strand"]].astype(str).to_numpy()
    bad = np.flatnonzero(~np.isin(strand_raw, ["+", "-"]))
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"Gene {labels[i]!r} of the {what} has strand {strand_raw[i]!r}; expected '+' or '-'."
        )
    strand = np.where(strand_raw == "+", 1, -1).astype(np.int8)
    return Genes(iv.chrom, iv.start, iv.end, strand, names)


def read_bed_like(path) -> Genes:
    """Genes of a BED6 file (chrom, start, end, name, score, strand; no header) or of a
    tab/comma-separated table with a header naming the columns."""
    path = Path(path)
    sep = "," if path.suffix == ".csv" or path.name.endswith(".csv.gz") else "\t"
    first = pd.read_csv(path, sep=sep, header=None, nrows=1, comment="#", dtype=str)
    header = {str(v).lower() for v in first.iloc[0]}
    if header & set(_COLUMNS["chrom"]):
        frame = pd.read_csv(path, sep=sep, comment="#")
        return genes_from_frame(frame, what=f"table {path.name}")
    frame = pd.read_csv(path, sep=sep, header=None, comment="#", dtype=str)
    if frame.shape[1] < 6:
        raise ValueError(
            f"{path.name} has {frame.shape[1]} columns; a BED-like annotation needs 6 (chrom, "
            "start, end, name, score, strand) or a header naming chrom, start, end, strand and "
            "gene_name."
        )
    frame = frame.iloc[:, :6]
    frame.columns = ["chrom", "start", "end", "name", "score", "strand"]
    for col in ("start", "end"):
        parsed = pd.to_numeric(frame[col], errors="coerce")
        if parsed.isna().any():
            i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise ValueError(
                f"Malformed BED line {i + 1} of {path.name}: {col} {frame[col].iloc[i]!r} is not "
                "an integer."
            )
        frame[col] = parsed
    return genes_from_frame(frame, what=f"BED file {path.name}")


def read_annotation(annotation) -> Genes:
    """A :class:`Genes` from a GTF/GFF path, a BED-like path or a DataFrame."""
    if isinstance(annotation, pd.DataFrame):
        return genes_from_frame(annotation)
    if isinstance(annotation, str | Path):
        path = Path(annotation)
        if not path.exists():
            raise ValueError(f"Annotation file {str(path)!r} does not exist.")
        suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
        reader = (
            read_gtf if suffixes and suffixes[-1] in (".gtf", ".gff", ".gff3") else read_bed_like
        )
        try:
            return reader(path)
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as error:
            # a binary, truncated or mislabelled file: say which file and what to check
            raise ValueError(
                f"Annotation file {str(path)!r} could not be read as text "
                f"({type(error).__name__}: {error}). Check that it is an uncompressed or "
                "gzipped GTF/GFF/BED file and that the download is complete."
            ) from error
    raise ValueError(
        f"annotation must be a GTF/GFF/BED file path or a pandas DataFrame, got "
        f"{type(annotation).__name__}."
    )


# --------------------------------------------------------------------------------- domains
def link_matrix(
    peaks: Intervals,
    genes: Genes,
    *,
    rule: str = "gene_body",
    upstream: int | None = None,
    downstream: int | None = None,
    decay: float = 5000.0,
    max_distance: int = 100_000,
) -> sp.csr_matrix:
    """Genes x peaks link weights (CSR float32) by a sorted sweep per chromosome."""
    if rule not in RULES:
        raise ValueError(f"rule={rule!r} is not supported; choose one of {', '.join(RULES)}.")
    up_default, down_default = RULE_DEFAULTS[rule]
    upstream = up_default if upstream is None else int(upstream)
    downstream = down_default if downstream is None else int(downstream)
    dlo, dhi, rlo, rhi = _domains(genes, rule, upstream, downstream, max_distance)
    gene_idx, peak_idx = overlap_pairs(peaks, genes.chrom, dlo, dhi)
    if rule == "distance":
        gap = np.maximum(
            0,
            np.maximum(rlo[gene_idx] - peaks.end[peak_idx], peaks.start[peak_idx] - rhi[gene_idx]),
        )
        weights = np.exp(-gap / float(decay)) + np.exp(-1.0)
    else:
        weights = np.ones(len(gene_idx))
    return sp.csr_matrix(
        (weights.astype(np.float32), (gene_idx, peak_idx)),
        shape=(len(genes.chrom), len(peaks.chrom)),
    )


def _domains(genes: Genes, rule: str, upstream: int, downstream: int, max_distance: int):
    """Domains with the neighbour caps computed exactly, one chromosome at a time."""
    plus = genes.strand > 0
    lo, hi = genes.start, genes.end
    if rule == "promoter":
        tss = np.where(plus, lo, hi - 1)
        rlo = np.where(plus, tss - upstream, tss - downstream)
        rhi = np.where(plus, tss + downstream, tss + upstream) + 1
    else:
        rlo = np.where(plus, lo - upstream, lo - downstream)
        rhi = np.where(plus, hi + downstream, hi + upstream)
    rlo = np.maximum(rlo, 0)
    if rule != "distance":
        return rlo, rhi, rlo, rhi
    big = np.iinfo(np.int64).max
    prev_end = np.full(len(rlo), -big)
    next_start = np.full(len(rlo), big)
    codes = pd.factorize(genes.chrom)[0]
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        # previous region of gene g: the largest end among regions earlier in start order
        order = idx[np.argsort(rlo[idx], kind="stable")]
        running = np.maximum.accumulate(rhi[order])
        prev_end[order[1:]] = running[:-1]
        # next region of gene g: the smallest start among regions later in end order
        order = idx[np.argsort(rhi[idx], kind="stable")][::-1]
        running = np.minimum.accumulate(rlo[order])
        next_start[order[1:]] = running[:-1]
    dlo = np.maximum(rlo - max_distance, np.minimum(rlo, prev_end))
    dhi = np.minimum(rhi + max_distance, np.maximum(rhi, next_start))
    return np.maximum(dlo, 0), dhi, rlo, rhi


def overlap_pairs(
    peaks: Intervals, chrom: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """All (query, peak) pairs with ``peak.start < hi`` and ``lo < peak.end``, query intervals
    ``[lo, hi)`` on ``chrom``.

    Per chromosome the peaks are sorted by start; the running maximum of their ends is
    non-decreasing, so the first peak that can reach past ``lo`` and the first peak starting at
    or after ``hi`` are two ``searchsorted`` calls. Candidates between them are filtered by their
    own end. The result is exact; the work is proportional to the pairs found when peaks do not
    nest inside one another (the usual case of called peaks).
    """
    out_q, out_p = [], []
    peak_codes, peak_chroms = pd.factorize(peaks.chrom)
    query_codes = pd.Index(peak_chroms).get_indexer(np.asarray(chrom, dtype=object))
    order_all = np.argsort(peak_codes, kind="stable")
    bounds = np.searchsorted(peak_codes[order_all], np.arange(len(peak_chroms) + 1))
    for code in range(len(peak_chroms)):
        queries = np.flatnonzero(query_codes == code)
        if not len(queries):
            continue
        members = order_all[bounds[code] : bounds[code + 1]]
        members = members[np.argsort(peaks.start[members], kind="stable")]
        starts = peaks.start[members]
        ends = peaks.end[members]
        reach = np.maximum.accumulate(ends)
        first = np.searchsorted(reach, lo[queries], side="right")
        last = np.searchsorted(starts, hi[queries], side="left")
        counts = np.maximum(last - first, 0)
        total = int(counts.sum())
        if not total:
            continue
        q = np.repeat(queries, counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        cand = np.repeat(first, counts) + offsets
        keep = ends[cand] > lo[q]
        out_q.append(q[keep])
        out_p.append(members[cand[keep]])
    if not out_q:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_q), np.concatenate(out_p)


def merge_gene_names(links: sp.csr_matrix, names: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """One row per distinct gene name (first-seen order): duplicated names (several loci) are
    combined by the element-wise maximum of their link weights."""
    codes, uniques = pd.factorize(pd.Index(names))
    if len(uniques) == len(names):
        return links, np.asarray(uniques, dtype=object)
    coo = links.tocoo()
    frame = pd.DataFrame({"g": codes[coo.row], "p": coo.col, "w": coo.data})
    merged = frame.groupby(["g", "p"], sort=False)["w"].max().reset_index()
    out = sp.csr_matrix(
        (merged["w"].to_numpy(np.float32), (merged["g"].to_numpy(), merged["p"].to_numpy())),
        shape=(len(uniques), links.shape[1]),
    )
    return out, np.asarray(uniques, dtype=object)

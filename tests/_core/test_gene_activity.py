"""Region-to-gene links (``_core.gene_activity.link_matrix``) against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from scintegrate._core.gene_activity import Genes, Intervals, link_matrix

RULE_PARAMS = {
    "gene_body": {"upstream": 2000, "downstream": 0},
    "promoter": {"upstream": 1000, "downstream": 100},
    "distance": {"upstream": 5000, "downstream": 0},
}


def _random_genome(rng, n_genes=80, n_peaks=400):
    chroms = np.array(["chr1", "chr2", "chrX"], dtype=object)
    g_chrom = rng.choice(chroms, n_genes)
    g_start = rng.integers(0, 400_000, n_genes)
    g_end = g_start + rng.integers(1, 30_000, n_genes)
    strand = rng.choice(np.array([1, -1], dtype=np.int8), n_genes)
    # peaks: mostly small, a few large ones that nest others
    p_chrom = rng.choice(np.append(chroms, "chrY"), n_peaks)
    p_start = rng.integers(0, 450_000, n_peaks)
    widths = np.where(rng.random(n_peaks) < 0.05, 20_000, rng.integers(1, 1500, n_peaks))
    genes = Genes(
        g_chrom, g_start, g_end, strand, np.array([f"g{i}" for i in range(n_genes)], dtype=object)
    )
    return Intervals(p_chrom, p_start, p_start + widths), genes


def _brute_force(peaks, genes, rule, upstream, downstream, decay=5000.0, max_distance=100_000):
    """The documented rules, one (gene, peak) pair at a time."""
    n_g, n_p = len(genes.chrom), len(peaks.chrom)
    rlo, rhi = np.zeros(n_g, np.int64), np.zeros(n_g, np.int64)
    for g in range(n_g):
        lo, hi, plus = genes.start[g], genes.end[g], genes.strand[g] > 0
        if rule == "promoter":
            tss = lo if plus else hi - 1
            a, b = (
                (tss - upstream, tss + downstream + 1)
                if plus
                else (
                    tss - downstream,
                    tss + upstream + 1,
                )
            )
        else:
            a, b = (lo - upstream, hi + downstream) if plus else (lo - downstream, hi + upstream)
        rlo[g], rhi[g] = max(a, 0), b
    dlo, dhi = rlo.copy(), rhi.copy()
    if rule == "distance":
        start_order = {c: [] for c in set(genes.chrom)}
        for g in np.argsort(rlo, kind="stable"):
            start_order[genes.chrom[g]].append(g)
        end_order = {c: [] for c in set(genes.chrom)}
        for g in np.argsort(rhi, kind="stable"):
            end_order[genes.chrom[g]].append(g)
        for g in range(n_g):
            order = start_order[genes.chrom[g]]
            before = order[: order.index(g)]
            prev_end = max((rhi[h] for h in before), default=-(10**18))
            order = end_order[genes.chrom[g]]
            after = order[order.index(g) + 1 :]
            next_start = min((rlo[h] for h in after), default=10**18)
            dlo[g] = max(rlo[g] - max_distance, min(rlo[g], prev_end), 0)
            dhi[g] = min(rhi[g] + max_distance, max(rhi[g], next_start))
    out = np.zeros((n_g, n_p))
    for g in range(n_g):
        for p in range(n_p):
            if peaks.chrom[p] != genes.chrom[g]:
                continue
            if peaks.start[p] < dhi[g] and dlo[g] < peaks.end[p]:
                if rule == "distance":
                    gap = max(0, rlo[g] - peaks.end[p], peaks.start[p] - rhi[g])
                    out[g, p] = np.exp(-gap / decay) + np.exp(-1)
                else:
                    out[g, p] = 1.0
    return out


@pytest.mark.parametrize("rule", ["gene_body", "promoter", "distance"])
@pytest.mark.parametrize("seed", [0, 1])
def test_links_match_brute_force(rule, seed):
    rng = np.random.default_rng(seed)
    peaks, genes = _random_genome(rng)
    fast = link_matrix(peaks, genes, rule=rule, max_distance=50_000).toarray()
    slow = _brute_force(peaks, genes, rule, **RULE_PARAMS[rule], max_distance=50_000)
    assert (slow > 0).sum() > 20  # the comparison is not vacuous
    np.testing.assert_allclose(fast, slow, rtol=1e-6)
    assert set(np.unique(genes.strand)) == {-1, 1}


def test_strand_decides_upstream_side():
    genes = Genes(
        np.array(["chr1", "chr1"], dtype=object),
        np.array([10_000, 50_000]),
        np.array([20_000, 60_000]),
        np.array([1, -1], dtype=np.int8),
        np.array(["plus", "minus"], dtype=object),
    )
    # 1 kb upstream of the + gene (before its start) and 1 kb past the - gene's end (upstream)
    peaks = Intervals(
        np.array(["chr1"] * 4, dtype=object),
        np.array([8_900, 20_500, 49_000, 60_500]),
        np.array([9_100, 20_700, 49_200, 60_700]),
    )
    links = link_matrix(peaks, genes, rule="gene_body").toarray()
    np.testing.assert_array_equal(links, [[1, 0, 0, 0], [0, 0, 0, 1]])

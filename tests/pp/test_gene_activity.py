"""pp.gene_activity: parsing, slots, copies and bad input (links: tests/_core)."""

from __future__ import annotations

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scintegrate as si


def _atac(names, rng=None):
    rng = rng or np.random.default_rng(0)
    X = sp.random(30, len(names), density=0.3, format="csr", random_state=1, dtype=np.float32)
    X.data = np.ceil(X.data * 4)
    return ad.AnnData(X, var=pd.DataFrame(index=names))


ANNOT = pd.DataFrame(
    {
        "chrom": ["chr1", "chr1", "chr2"],
        "start": [10_000, 30_000, 5_000],
        "end": [20_000, 40_000, 8_000],
        "strand": ["+", "-", "+"],
        "gene_name": ["A", "B", "C"],
    }
)
PEAKS = ["chr1_9000_9500", "chr1:15000-15500", "chr1_40500_41000", "chr2_6000_6200", "chr3_1_100"]


def test_activity_sums_linked_peaks_and_writes_slots():
    atac = _atac(PEAKS)
    X_before = atac.X.copy()
    out = si.pp.gene_activity(atac, annotation=ANNOT)
    expected_links = np.array([[1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]])
    np.testing.assert_array_equal(out.uns["gene_activity"]["links"].toarray(), expected_links)
    np.testing.assert_allclose(out.X.toarray(), atac.X.toarray() @ expected_links.T)
    assert sp.issparse(out.X) and list(out.var_names) == ["A", "B", "C"]
    np.testing.assert_array_equal(atac.varm["gene_activity"].toarray(), expected_links.T)
    assert list(atac.uns["gene_activity"]["genes"]) == ["A", "B", "C"]
    np.testing.assert_array_equal(atac.var["gene_activity_n_genes"], [1, 1, 1, 1, 0])
    assert out.uns["gene_activity"]["params"]["rule"] == "gene_body"
    assert (atac.X != X_before).nnz == 0


def test_var_columns_genes_order_and_duplicates():
    atac = _atac([f"p{i}" for i in range(3)])
    atac.var["chrom"] = ["chr1", "chr1", "chr2"]
    atac.var["start"] = [9_000, 35_000, 6_000]
    atac.var["end"] = [9_500, 35_500, 6_100]
    annot = pd.concat([ANNOT, ANNOT.iloc[[0]].assign(start=34_000, end=36_000)])  # A: 2 loci
    out = si.pp.gene_activity(atac, annotation=annot, genes=["C", "A", "Z"], key_added="ga")
    np.testing.assert_array_equal(
        out.uns["ga"]["links"].toarray(), [[0, 0, 1], [1, 1, 0], [0, 0, 0]]
    )
    assert list(out.var_names) == ["C", "A", "Z"]


def test_gtf_bed_and_frame_agree(tmp_path):
    gtf = tmp_path / "genes.gtf"
    gtf.write_text(
        "#!genome-build test\n"
        'chr1\tsrc\tgene\t10001\t20000\t.\t+\t.\tgene_id "G1"; gene_name "A";\n'
        'chr1\tsrc\ttranscript\t10001\t20000\t.\t+\t.\tgene_id "G1"; gene_name "A";\n'
        'chr1\tsrc\tgene\t30001\t40000\t.\t-\t.\tgene_id "G2"; gene_name "B";\n'
        'chr2\tsrc\tgene\t5001\t8000\t.\t+\t.\tgene_id "G3"; gene_name "C";\n'
    )
    bed = tmp_path / "genes.bed"
    bed.write_text(
        "chr1\t10000\t20000\tA\t0\t+\nchr1\t30000\t40000\tB\t0\t-\nchr2\t5000\t8000\tC\t0\t+\n"
    )
    results = [
        si.pp.gene_activity(_atac(PEAKS), annotation=a, copy=True).X.toarray()
        for a in (gtf, bed, ANNOT)
    ]
    np.testing.assert_array_equal(results[0], results[2])
    np.testing.assert_array_equal(results[1], results[2])


def test_mudata_copy_links_and_round_trip(tmp_path):
    atac = _atac(PEAKS)
    mdata = mudata.MuData({"atac": atac, "rna": ad.AnnData(np.ones((30, 3)))})
    out = si.pp.gene_activity(mdata, annotation=ANNOT, copy=True)
    assert "gene_activity" not in mdata["atac"].varm
    si.pp.gene_activity(mdata, annotation=ANNOT, rule="distance")
    assert "gene_activity" in mdata["atac"].varm
    # a ready link matrix (as GxR.npz) gives the same activity
    links = out.uns["gene_activity"]["links"]
    again = si.pp.gene_activity(atac.copy(), links=links, genes=["A", "B", "C"])
    np.testing.assert_allclose(again.X.toarray(), out.X.toarray())
    frame = pd.DataFrame(links.toarray(), index=["A", "B", "C"], columns=PEAKS)
    np.testing.assert_allclose(
        si.pp.gene_activity(atac.copy(), links=frame).X.toarray(), out.X.toarray()
    )
    path = tmp_path / "m.h5mu"
    mdata.write(path)
    back = mudata.read_h5mu(path)
    np.testing.assert_allclose(
        back["atac"].varm["gene_activity"].toarray(), mdata["atac"].varm["gene_activity"].toarray()
    )
    out.write_h5ad(tmp_path / "ga.h5ad")
    assert ad.read_h5ad(tmp_path / "ga.h5ad").uns["gene_activity"]["links"].nnz == links.nnz


def test_bundled_links_reproduce_bundled_gene_activity():
    atac = si.datasets.snareseq_cortex_atac_peaks()
    genes = atac.uns["gene_activity"]["genes"]
    links = atac.varm["gene_activity"].T.tocsr()
    out = si.pp.gene_activity(atac, links=links, genes=genes, copy=True)
    reference = si.datasets.snareseq_cortex_atac_gene_activity()
    assert abs(out.X - reference.X).sum() == 0
    assert list(out.var_names) == list(reference.var_names)


def test_user_links_and_counts_are_not_modified():
    atac = _atac(PEAKS)
    atac.X.indices[:2] = atac.X.indices[1::-1].copy()  # unsorted counts
    atac.X.has_sorted_indices = False
    counts = (atac.X.data.copy(), atac.X.indices.copy(), atac.X.indptr.copy())
    links = sp.csr_matrix(
        (np.array([1.0, 2.0, 3.0], np.float32), np.array([3, 0, 1]), np.array([0, 2, 3])),
        shape=(2, len(PEAKS)),
    )  # unsorted indices in row 0, float32: scipy would share its arrays
    before = (links.data.copy(), links.indices.copy(), links.indptr.copy())
    out = si.pp.gene_activity(atac, links=links, genes=["A", "B"])
    for now, then in zip((links.data, links.indices, links.indptr), before, strict=True):
        np.testing.assert_array_equal(now, then)
    for now, then in zip((atac.X.data, atac.X.indices, atac.X.indptr), counts, strict=True):
        np.testing.assert_array_equal(now, then)
    expected = atac.X.toarray() @ links.toarray().T
    np.testing.assert_allclose(out.X.toarray(), expected, rtol=1e-6)


def test_second_call_replaces_the_first_calls_slots():
    atac = _atac(PEAKS)
    si.pp.gene_activity(atac, annotation=ANNOT)
    assert set(atac.uns["gene_activity"]["slots"]) == {
        "varm:gene_activity",
        "var:gene_activity_n_genes",
    }
    si.pp.gene_activity(atac, annotation=ANNOT, genes=["B", "A"])
    assert atac.varm["gene_activity"].shape == (len(PEAKS), 2)
    assert list(atac.uns["gene_activity"]["genes"]) == ["B", "A"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decay": "a"}, "decay must be a finite number > 0"),
        ({"decay": 0}, "decay must be a finite number > 0"),
        ({"upstream": -1}, "upstream must be an integer >= 0"),
        ({"downstream": 2.5}, "downstream must be an integer >= 0"),
        ({"max_distance": True}, "max_distance must be an integer >= 0"),
    ],
)
def test_bad_numbers(kwargs, message):
    atac = _atac(PEAKS)
    with pytest.raises(ValueError, match=message):
        si.pp.gene_activity(atac, annotation=ANNOT, **kwargs)
    assert "gene_activity" not in atac.uns and "gene_activity" not in atac.varm


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="chrX-12"):
        si.pp.gene_activity(_atac(["chr1_1_100", "chrX-12"]), annotation=ANNOT)
    with pytest.raises(ValueError, match="start=500 and end=100"):
        si.pp.gene_activity(_atac(["chr1_1_100", "chr1_500_100"]), annotation=ANNOT)
    gtf = tmp_path / "bad.gtf"
    gtf.write_text(
        'chr1\tsrc\tgene\t10001\t20000\t.\t+\t.\tgene_name "A";\nchr1\tsrc\tgene\t30001\n'
    )
    with pytest.raises(ValueError, match="line 2"):
        si.pp.gene_activity(_atac(PEAKS), annotation=gtf)
    gtf.write_text('chr1\tsrc\tgene\tten\t20000\t.\t+\t.\tgene_name "A";\n')
    with pytest.raises(ValueError, match=r"line 1.*must be integers"):
        si.pp.gene_activity(_atac(PEAKS), annotation=gtf)
    with pytest.raises(ValueError, match="strand"):
        si.pp.gene_activity(_atac(PEAKS), annotation=ANNOT.assign(strand=["+", "*", "-"]))
    with pytest.raises(ValueError, match="no strand column"):
        si.pp.gene_activity(_atac(PEAKS), annotation=ANNOT.drop(columns="strand"))
    with pytest.raises(ValueError, match="exactly one"):
        si.pp.gene_activity(_atac(PEAKS))
    with pytest.raises(ValueError, match="expected \\(genes, peaks\\)"):
        si.pp.gene_activity(_atac(PEAKS), links=sp.eye(3, 4, format="csr"), genes=list("ABC"))
    with pytest.raises(ValueError, match="rule="):
        si.pp.gene_activity(_atac(PEAKS), annotation=ANNOT, rule="nearest")
    with pytest.raises(ValueError, match="not a modality"):
        si.pp.gene_activity(mudata.MuData({"peaks": _atac(PEAKS)}), annotation=ANNOT)


@pytest.mark.parametrize("kind", ["binary.gtf.gz", "truncated.gtf.gz", "binary.gtf", "binary.bed"])
def test_unreadable_annotation_file_is_a_value_error(tmp_path, kind):
    import gzip

    path = tmp_path / kind
    text = b'chr1\tsrc\tgene\t10000\t20000\t.\t+\t.\tgene_id "A"; gene_name "A";\n' * 50
    if kind.startswith("truncated"):
        path.write_bytes(gzip.compress(text)[:-30])
    else:
        path.write_bytes(bytes(range(256)) * 10)
    atac = _atac(PEAKS)
    with pytest.raises(ValueError, match="could not be read as text"):
        si.pp.gene_activity(atac, annotation=path)
    assert "gene_activity" not in atac.varm

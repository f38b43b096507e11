"""How Leiden at a fixed resolution scores perfectly separated clusters of a low-dimensional embedding.

scJMT's cell factors have one column per cell cluster (5 in the equal simulated scenario, 3 in
the unequal one), scMoMaT's latent space 30. This script draws *ideal* embeddings with the cell
counts of the two scenarios of ``scjmt.py``: every true type a Gaussian blob around its own
vertex of the simplex (standard deviation 0.05 per coordinate, about what scJMT's factors show
within a type; the kNN graph does not change with this scale as long as the blobs stay apart),
no overlap and no modality offset, so the types are perfectly separated.
scJMT's rows sum to 1 (points of the simplex, one dimension fewer than columns): the rows
"simplex" keep that constraint (the noise has zero sum), the rows "free" do not.
It prints the ARI of the Leiden clusters (``metrics.cluster_agreement``: 15 neighbours, the
harness's scoring) at a few resolutions, for the embedding size of scJMT and for 30 dimensions.
A perfect clustering exists at every size; what changes is whether Leiden at a given resolution
finds it, which bounds what the fixed-resolution score can show for an embedding of that size.

    python benchmarks/leiden_dimension.py   # 5 seeds, about 10 s
"""

from __future__ import annotations

import argparse

import numpy as np

import scintegrate as si

# cells per true type, RNA and ATAC together (benchmarks/scjmt.py, simulated_inputs)
SCENARIOS = {
    "1, equal (5 types)": [240] * 5,
    "2, unequal (3 types)": [200, 500, 500],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    header = " | ".join(f"res {r}: ARI (clusters)" for r in args.resolutions)
    for scenario, sizes in SCENARIOS.items():
        truth = np.repeat(np.arange(len(sizes)), sizes).astype(str)
        print(f"scenario {scenario}, {sum(sizes)} cells; median over {args.seeds} seeds")
        print(f"  dims  rows    | {header}")
        for dims, simplex in ((len(sizes), True), (len(sizes), False), (30, False)):
            tables = []
            for seed in range(args.seeds):
                noise = np.random.default_rng(seed).normal(scale=0.05, size=(len(truth), dims))
                if simplex:  # rows keep summing to 1
                    noise -= noise.mean(axis=1, keepdims=True)
                z = np.eye(dims)[truth.astype(int)] + noise
                tables.append(si.metrics.cluster_agreement(z, truth, resolution=args.resolutions))
            ari = np.median([t["ari"] for t in tables], axis=0)
            clusters = np.median([t["n_clusters"] for t in tables], axis=0)
            cells = " | ".join(f"{a:.2f} ({c:.0f})" for a, c in zip(ari, clusters, strict=True))
            rows = "simplex" if simplex else "free"
            print(f"  {dims:4d}  {rows:7s} | {cells}", flush=True)


if __name__ == "__main__":
    main()

"""Command line: ``scintegrate demo`` and ``scintegrate nmf IN OUT`` for pipelines."""

from __future__ import annotations

import argparse
import logging
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scintegrate", description="Integration of single-cell data, scanpy style."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")

    demo = commands.add_parser(
        "demo", help="run NMF-SSE vs NMF-Poisson on bundled real data (offline)"
    )
    demo.add_argument(
        "--out", default="scintegrate_demo", help="output folder (default: %(default)s)"
    )
    demo.add_argument("--n-components", type=int, default=20)
    demo.add_argument("--max-iter", type=int, default=200)
    demo.add_argument(
        "--track-every", type=int, default=20, help="iterations between ARI evaluations"
    )
    demo.add_argument("--random-state", type=int, default=0)

    nmf = commands.add_parser("nmf", help="run tl.nmf on an h5ad file and write the result")
    nmf.add_argument("input", help="input .h5ad")
    nmf.add_argument("output", help="output .h5ad (may equal input)")
    nmf.add_argument("--n-components", type=int, default=20)
    nmf.add_argument("--layer", default=None)
    nmf.add_argument("--objective", choices=["frobenius", "kl"], default="frobenius")
    nmf.add_argument("--solver", choices=["auto", "hals", "mu"], default="auto")
    nmf.add_argument("--max-iter", type=int, default=200)
    nmf.add_argument("--tol", type=float, default=1e-4)
    nmf.add_argument("--labels-key", default=None)
    nmf.add_argument("--track-every", type=int, default=1)
    nmf.add_argument("--random-state", type=int, default=0)
    nmf.add_argument("--key-added", default="nmf")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scintegrate`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # CLI only, never on import
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if args.command == "demo":
        from ._demo import run_demo

        run_demo(
            args.out,
            n_components=args.n_components,
            max_iter=args.max_iter,
            track_every=args.track_every,
            random_state=args.random_state,
        )
        return 0
    if args.command == "nmf":
        import anndata as ad

        from . import tl

        adata = ad.read_h5ad(args.input)
        tl.nmf(
            adata,
            args.n_components,
            layer=args.layer,
            objective=args.objective,
            solver=args.solver,
            max_iter=args.max_iter,
            tol=args.tol,
            labels_key=args.labels_key,
            track_every=args.track_every,
            random_state=args.random_state,
            key_added=args.key_added,
        )
        adata.write_h5ad(args.output)
        print(f"wrote {args.output}")
        return 0
    parser.print_help()
    return 1


if __name__ == "__main__":
    sys.exit(main())

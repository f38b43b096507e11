"""What a new user pays: the first call of the numba-backed tools in a fresh process.

For ``tl.online_inmf`` (Kang PBMC, 13,999 cells, k = 20, 5 epochs), ``tl.inmf`` (ANLS, same data,
k = 20, 30 iterations) and ``tl.nmf`` (bundled SNARE-seq cortex RNA, k = 20, 50 iterations), each
in a new Python process running a copy of the package (as a fresh install would), times:

* ``cold``: the first call with an empty numba cache (every kernel compiled);
* ``warm``: a new process after that, the cache filled (what every later session pays);
* ``read-only 1`` and ``read-only 2``: two processes in a row with the package copy and the
  home folder not writable and no ``NUMBA_CACHE_DIR``, as in many pipeline containers (as
  root: read-only bind mounts in a private mount namespace, ``unshare -m``; otherwise file
  permissions). The second shows whether anything was cached.

Each process also times a second call of the tool (no compile, no cache load).

Each row prints the import time and the call's wall time. Run from the repository root::

    python benchmarks/first_call.py [--tools online_inmf,inmf,nmf] [--repeats 1]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KANG = REPO.parent / "shared" / "data" / "kang2018_pbmc_ifnb"

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import anndata as ad
import scintegrate as si
t1 = time.perf_counter()
si.settings.progress_bar = False
tool, path = sys.argv[1], sys.argv[2]
adata = ad.read_h5ad(path)
calls = {
    "online_inmf": lambda a: si.tl.online_inmf(a, 20, batch_key="dataset", max_epochs=5),
    "inmf": lambda a: si.tl.inmf(a, 20, batch_key="dataset", solver="anls", max_iter=30, tol=0),
    "nmf": lambda a: si.tl.nmf(a, 20, max_iter=50, tol=0),
}
times = []
for _ in range(2):
    data = adata.copy()
    start = time.perf_counter()
    calls[tool](data)
    times.append(time.perf_counter() - start)
print(json.dumps({"import_s": t1 - t0, "first_s": times[0], "second_s": times[1]}))
"""


def prepare_inputs(tmp: Path) -> dict[str, Path]:
    """The Kang PBMC data LIGER-preprocessed (both iNMF tools) and the cortex RNA (NMF)."""
    import anndata as ad

    import scintegrate as si

    parts = {}
    for name in ("ctrl", "stim"):
        with gzip.open(KANG / f"pbmc_{name}.h5ad.gz") as handle:
            parts[name] = ad.read_h5ad(handle)
    kang = ad.concat(parts, label="dataset", index_unique="-")
    si.pp.liger_preprocess(kang, batch_key="dataset")
    paths = {"kang": tmp / "kang.h5ad", "cortex": tmp / "cortex.h5ad"}
    kang.write_h5ad(paths["kang"])
    si.datasets.snareseq_cortex_rna().write_h5ad(paths["cortex"])
    return paths


def fresh_install(tmp: Path, name: str, source: Path) -> Path:
    """A copy of the package source without any compiled cache, as a new install has."""
    site = tmp / name
    shutil.copytree(
        source / "scintegrate",
        site / "scintegrate",
        ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"),
    )
    return site


def make_read_only(path: Path) -> None:
    for entry in [path, *path.rglob("*")]:
        mode = entry.stat().st_mode
        entry.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def run_child(
    tool: str, data: Path, site: Path, env_extra: dict[str, str], read_only: tuple[Path, ...] = ()
) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    env |= {"PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1", **env_extra}
    command = [sys.executable, "-c", CHILD, tool, str(data)]
    if read_only and os.geteuid() == 0:  # root ignores file permissions: mount read-only
        mounts = " && ".join(
            f"mount --bind {p} {p} && mount -o remount,bind,ro {p}" for p in read_only
        )
        command = ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh", *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tools", default="online_inmf,inmf,nmf")
    parser.add_argument("--repeats", type=int, default=1, help="fresh installs per tool")
    parser.add_argument(
        "--src",
        type=Path,
        default=REPO / "src",
        help="folder holding the scintegrate package to copy (e.g. another checkout's src)",
    )
    args = parser.parse_args()
    tools = args.tools.split(",")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        inputs = prepare_inputs(tmp)
        rows = []
        for tool in tools:
            data = inputs["cortex" if tool == "nmf" else "kang"]
            for repeat in range(args.repeats):
                site = fresh_install(tmp, f"site-{tool}-{repeat}", args.src)
                cache = tmp / f"cache-{tool}-{repeat}"
                cache.mkdir()
                cold = run_child(tool, data, site, {"NUMBA_CACHE_DIR": str(cache)})
                warm = run_child(tool, data, site, {"NUMBA_CACHE_DIR": str(cache)})
                ro_site = fresh_install(tmp, f"ro-{tool}-{repeat}", args.src)
                home = tmp / f"home-{tool}-{repeat}"
                home.mkdir()
                make_read_only(ro_site)
                make_read_only(home)
                # where the package falls back to when nothing else is writable: start empty
                fallback = Path(tempfile.gettempdir()) / f"scintegrate-numba-{os.getuid()}"
                shutil.rmtree(fallback, ignore_errors=True)
                env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / "c")}
                read_only = [
                    run_child(tool, data, ro_site, env, read_only=(ro_site, home)) for _ in range(2)
                ]
                shutil.rmtree(fallback, ignore_errors=True)
                rows.append((tool, cold, warm, *read_only))
        print(f"{'tool':<12} {'case':<12} {'import s':>9} {'first call s':>13} {'second s':>9}")
        for tool, cold, warm, read_only_1, read_only_2 in rows:
            cases = (
                ("cold", cold),
                ("warm", warm),
                ("read-only 1", read_only_1),
                ("read-only 2", read_only_2),
            )
            for case, result in cases:
                if "error" in result:
                    print(f"{tool:<12} {case:<12} error: {result['error']}")
                    continue
                print(
                    f"{tool:<12} {case:<12} {result['import_s']:9.2f} {result['first_s']:13.2f}"
                    f" {result['second_s']:9.2f}"
                )
        for entry in tmp.rglob("*"):  # let the temporary folder be removed
            entry.chmod(entry.stat().st_mode | stat.S_IWUSR)


if __name__ == "__main__":
    main()

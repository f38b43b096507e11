"""Helpers shared by the benchmark scripts and their workers.

Standard library only: the workers import this module from the Python of *other* virtual
environments (scikit-learn, pyliger, pyplanc, scETM, lsmmdma), where neither our package nor its
dependencies are installed. The harnesses (``nmf.py``, ``inmf.py``, ...) and the workers
(``_nmf_worker.py``, ``_inmf_worker.py``, ...) live in this directory, which Python puts first on
``sys.path`` when it runs one of them as a script, so ``import _common`` works from every
environment without editing ``sys.path``.

A harness starts every measured call with :func:`run_worker`; a worker measures it with
:class:`Measurement`. A script that measures in its own process reads its peak memory with
:func:`status_mb` (``VmHWM``).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ENVS = HERE / ".envs"
RESULTS = HERE / "results"

# thread pools a worker may use; every implementation gets the same limit
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    # zarr decompresses chunks on a thread pool of os.cpu_count() threads by default
    "ZARR_THREADING__MAX_WORKERS",
)


# --------------------------------------------------------------------------------------------
# environments and code version (used by the harnesses)
# --------------------------------------------------------------------------------------------


def ensure_env(
    env: Path, packages: Sequence[str], check: str, *, create: bool = True
) -> Path | None:
    """Python of the virtual environment ``env``; creates it and installs ``packages`` if needed.

    ``check`` is Python code that must run without error in a usable environment (typically the
    imports a worker needs). With ``create=False`` a missing or broken environment gives
    ``None`` instead of an installation.
    """
    python = env / "bin" / "python"
    command = [str(python), "-c", check]
    if python.exists() and subprocess.run(command, capture_output=True).returncode == 0:
        return python
    if not create:
        return None
    print(f"creating the environment {env} ({' '.join(packages)}) ...", flush=True)
    subprocess.run(["python3", "-m", "venv", str(env)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True)
    subprocess.run(command, check=True)
    return python


def code_version() -> dict:
    """Commit of the repository and whether the package sources differ from it (read-only git)."""

    def git(*arguments: str) -> str:
        try:
            completed = subprocess.run(
                ["git", *arguments], cwd=REPO, capture_output=True, text=True, check=True
            )
        except (OSError, subprocess.CalledProcessError):
            return ""
        return completed.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "src_modified": bool(git("status", "--porcelain", "--", "src")),
    }


def thread_env(n_threads: int, base: dict | None = None) -> dict:
    """A copy of ``base`` (default: ``os.environ``) with every thread pool limited to ``n_threads``."""
    env = dict(os.environ if base is None else base)
    env.update({name: str(n_threads) for name in THREAD_VARIABLES})
    return env


def empty_dir(path: Path) -> Path:
    """``path`` as a new, empty directory (what an earlier run left there is removed)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# --------------------------------------------------------------------------------------------
# running a worker (used by the harnesses)
# --------------------------------------------------------------------------------------------

# how much of a failed worker's output its error message quotes
OUTPUT_TAIL = 3000


class WorkerRun(NamedTuple):
    """What :func:`run_worker` returns."""

    stdout: str  # the worker's standard output when captured, else ""
    seconds: float  # wall time of the whole process: start-up and imports included


def run_worker(
    python: str | Path,
    worker: Path,
    arguments: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
    capture: bool = True,
    timeout: float | None = None,
) -> WorkerRun:
    """Run ``python worker *arguments`` in a fresh process: the one way a harness runs a fit.

    A fresh process per measured call gives each call its own peak memory, and lets every
    implementation run with the Python of its own environment. ``env`` is the worker's whole
    environment (default: this process's), typically :func:`thread_env`. Output: with ``log``,
    standard output and error both go into that file (some implementations print progress bars
    whatever their options say); otherwise, with ``capture``, standard output is returned and
    standard error kept for the error message; with ``capture=False`` both go to this terminal.

    A worker that exits with an error raises ``RuntimeError`` quoting the end of its output (log
    or standard error); one that runs longer than ``timeout`` seconds raises
    ``subprocess.TimeoutExpired``.
    """
    command = [str(python), str(worker), *map(str, arguments)]
    started = time.perf_counter()
    if log is not None:
        with open(log, "w") as handle:
            completed = subprocess.run(
                command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd, timeout=timeout
            )
    else:
        completed = subprocess.run(
            command, capture_output=capture, text=True, env=env, cwd=cwd, timeout=timeout
        )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        output = log.read_text(errors="replace") if log is not None else completed.stderr or ""
        tail = output[-OUTPUT_TAIL:]
        message = f"{worker.name} exited with {completed.returncode}"
        raise RuntimeError(message + (f"; end of its output:\n{tail}" if tail else ""))
    return WorkerRun(completed.stdout or "", seconds)


# --------------------------------------------------------------------------------------------
# measurements (used by the workers)
# --------------------------------------------------------------------------------------------


def status_mb(key: str) -> float:
    """A memory line of ``/proc/self/status`` (e.g. ``VmRSS``, ``VmHWM``) in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process) so far.

    Their difference over a fit is the CPU time other processes took meanwhile: on a shared
    machine that is the contention the measured wall time suffered from.
    """
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy
    busy = sum(fields[:8]) - fields[3] - fields[4]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return busy / os.sysconf("SC_CLK_TCK"), usage.ru_utime + usage.ru_stime


def wait_for_idle(max_wait: float, threshold: float = 0.1, window: float = 0.5) -> float:
    """Wait (at most ``max_wait`` s) until other processes use < ``threshold`` cores; seconds waited.

    On a shared machine this keeps a fit from starting in the middle of someone else's burst;
    whatever contention remains during the fit is still measured and reported.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < max_wait:
        busy_before, own_before = cpu_seconds()
        time.sleep(window)
        busy_after, own_after = cpu_seconds()
        if (busy_after - busy_before) - (own_after - own_before) < threshold * window:
            break
    return time.perf_counter() - start


class Measurement:
    """Wall time, CPU use and peak RSS of one call, measured around a ``with`` block.

    ``VmHWM`` is reset on entry (``/proc/self/clear_refs``), so ``peak_rss_mb`` is the process
    peak reached inside the block and ``baseline_rss_mb`` the RSS on entry. Not
    ``resource.getrusage(...).ru_maxrss``: in a process started by ``subprocess`` (vfork + exec)
    that starts at the *parent's* peak RSS.
    """

    def __enter__(self) -> Measurement:
        self.peak_is_per_call = reset_peak_rss()
        self.baseline_rss_mb = status_mb("VmRSS")
        self._busy, self._own = cpu_seconds()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        self.seconds = time.perf_counter() - self._start
        self.peak_rss_mb = status_mb("VmHWM")
        busy, own = cpu_seconds()
        own_cpu = own - self._own
        self.own_cores = own_cpu / self.seconds
        self.other_cores = max(busy - self._busy - own_cpu, 0.0) / self.seconds

    def as_dict(self) -> dict:
        return {
            "seconds": self.seconds,
            "baseline_rss_mb": self.baseline_rss_mb,
            # without the reset, VmHWM is the peak of the whole process so far
            "peak_rss_mb": self.peak_rss_mb,
            "rss_increase_mb": self.peak_rss_mb - self.baseline_rss_mb,
            "peak_is_per_call": self.peak_is_per_call,
            # mean number of cores busy with this process / with other processes
            "own_cores": self.own_cores,
            "other_cores": self.other_cores,
        }

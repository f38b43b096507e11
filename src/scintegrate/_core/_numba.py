"""The ``njit`` of every compiled kernel: compiled code is cached wherever that is possible.

numba caches a kernel next to its source file, else in the user's cache folder. When neither
is writable (a read-only install in a container whose home is read-only too), ``cache=True``
makes numba raise ``RuntimeError: cannot cache function`` when the module is imported, and
without a cache every process compiles every kernel again (8-12 s before the first result of
``tl.online_inmf`` / ``tl.inmf``, measured by ``benchmarks/first_call.py``). So, only in that
case and only when ``NUMBA_CACHE_DIR`` is not set, the cache goes to a private folder of this
user under the system's temporary folder (``numba.config.CACHE_DIR``, which numba reads for
every cached function of the process); when not even that can be written, kernels compile
without caching instead of failing.
"""

from __future__ import annotations

import functools
import os
import stat
import tempfile
from pathlib import Path

import numba
from numba.misc.appdirs import AppDirs


def _writable_folder(path: Path) -> bool:
    """Whether a file can be created in ``path`` (created if missing), as numba checks it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _private_temporary_folder() -> Path | None:
    """``<tmp>/scintegrate-numba-<uid>``, if it is (or can be made) this user's alone.

    Cache files are unpickled when loaded, so a folder that someone else owns or can write to
    is never used.
    """
    folder = Path(tempfile.gettempdir()) / f"scintegrate-numba-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError:
        return None
    shared = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or shared:
        return None
    return folder if _writable_folder(folder) else None


@functools.cache
def cache_available() -> bool:
    """Decide once per process where compiled kernels are cached; False when nowhere."""
    if numba.config.CACHE_DIR:  # the user's choice; numba reports its own problems
        return True
    if _writable_folder(Path(__file__).parent / "__pycache__"):
        return True
    if _writable_folder(Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)):
        return True
    folder = _private_temporary_folder()
    if folder is None:
        return False
    numba.config.CACHE_DIR = str(folder)
    return True


def njit(*args, **options):
    """:func:`numba.njit` with ``cache=True`` turned off where no cache can be written."""
    if options.get("cache") and not cache_available():
        options["cache"] = False
    return numba.njit(*args, **options)

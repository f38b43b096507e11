"""Where compiled kernels are cached (``_core/_numba.py``)."""

from __future__ import annotations

import os

import numba
import pytest

from scintegrate._core import _numba


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """No user cache setting, a temporary folder of our own, the decision not yet taken."""
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.setattr(_numba.tempfile, "gettempdir", lambda: str(tmp_path))
    _numba.cache_available.cache_clear()
    yield tmp_path
    _numba.cache_available.cache_clear()


def test_writable_package_folder_keeps_numba_defaults(fresh):
    assert _numba.cache_available()
    assert numba.config.CACHE_DIR == ""


def test_read_only_install_caches_in_a_private_temporary_folder(fresh, monkeypatch):
    monkeypatch.setattr(_numba, "_writable_folder", lambda path: str(fresh) in str(path))
    assert _numba.cache_available()
    folder = fresh / f"scintegrate-numba-{os.getuid()}"
    assert numba.config.CACHE_DIR == str(folder)
    assert (folder.stat().st_mode & 0o077) == 0


@pytest.mark.parametrize("mode", [0o777, 0o770])
def test_a_folder_others_can_write_is_never_used(fresh, monkeypatch, mode):
    folder = fresh / f"scintegrate-numba-{os.getuid()}"
    folder.mkdir()
    folder.chmod(mode)
    monkeypatch.setattr(_numba, "_writable_folder", lambda path: path == folder)
    assert not _numba.cache_available()  # compile without a cache rather than trust it
    assert numba.config.CACHE_DIR == ""
    kernel = _numba.njit(cache=True)(lambda x: x + 1)
    assert kernel(1) == 2


def test_user_setting_wins(fresh, monkeypatch):
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(fresh / "mine"))
    monkeypatch.setattr(_numba, "_writable_folder", lambda path: False)
    assert _numba.cache_available()
    assert numba.config.CACHE_DIR == str(fresh / "mine")

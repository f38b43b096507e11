"""Every notebook in ``tutorials/`` runs from top to bottom without an error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _threads import threads_per_worker

# the kernel's thread pools, sized to this worker's share of the cores (see threads_per_worker)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS", "ZARR_THREADING__MAX_WORKERS")  # fmt: skip

TUTORIALS = Path(__file__).parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


def test_tutorials_found():
    assert NOTEBOOKS, f"no notebooks found in {TUTORIALS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_tutorial_executes(path: Path, tmp_path: Path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    notebook = nbformat.read(path, as_version=4)
    # "python3" is ipykernel's own kernel, started with the Python running the tests, so the
    # notebook sees the same environment (and the same scintegrate) as the test suite.
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # working directory of the kernel
    )
    # variables already set (by the user, or by conftest for this worker) are kept
    env = {**dict.fromkeys(THREAD_VARIABLES, str(threads_per_worker())), **os.environ}
    # raises CellExecutionError, with the traceback, at the first failing cell
    client.execute(env=env)

    errors = [
        f"cell {index}: {output.get('ename')}: {output.get('evalue')}"
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, "\n".join(errors)

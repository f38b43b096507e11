"""The import rule of docs/contributing/architecture.md, checked on the source's import graph.

Layers, bottom to top: ``_core`` (numerics on arrays) < ``_version``, ``_logging``,
``_settings``, ``_docs`` < ``_utils`` (plumbing) < the public namespaces ``pp``, ``tl``, ``pl``,
``metrics``, ``datasets`` < ``cli``, ``_demo`` (and its UMAP process) and the package root. A
module imports only from its own layer or below, and the public namespaces never import each
other. Importing the package (and the command line's --help) does not load torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "scintegrate"
PUBLIC = ("pp", "tl", "pl", "metrics", "datasets")
RANK = {"_core": 0, "_version": 1, "_logging": 1, "_settings": 1, "_docs": 1, "_utils": 2}
RANK |= dict.fromkeys(PUBLIC, 3)
RANK |= {"cli": 4, "_demo": 4, "_demo_umap_worker": 4, "__init__": 4}


def _unit(parts: tuple[str, ...]) -> str:
    """The top-level unit (subpackage or module) of a module path inside the package."""
    return parts[0].removesuffix(".py") if parts else "__init__"


def package_imports(path: Path, root: Path = PACKAGE) -> list[tuple[str, int]]:
    """(unit imported, line) for every import of the package's own modules in ``path``."""
    package = path.relative_to(root).parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = base + tuple(node.module.split(".")) if node.module else base
            elif node.module and node.module.split(".")[0] == "scintegrate":
                target = tuple(node.module.split(".")[1:])
            else:
                continue
            if not target:  # "from . import x" at the root, or "from scintegrate import x"
                found.extend((alias.name, node.lineno) for alias in node.names)
            else:
                found.append((target[0], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "scintegrate":
                    found.append((parts[1] if len(parts) > 1 else "__init__", node.lineno))
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    """Every import that goes up a layer or sideways between public namespaces."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        importer = _unit(path.relative_to(root).parts)
        if importer not in RANK:
            problems.append(f"{path.relative_to(root)}: module not assigned to a layer")
            continue
        for imported, line in package_imports(path, root):
            if imported == importer or imported not in RANK:
                continue
            upward = RANK[imported] > RANK[importer]
            sideways = RANK[imported] == RANK[importer] == 3
            if upward or sideways:
                problems.append(f"{path.relative_to(root)}:{line} imports {imported}")
    return problems


def test_no_upward_or_sideways_imports():
    assert violations() == []


def test_rule_catches_a_violation(tmp_path):
    core = tmp_path / "_core"
    core.mkdir()
    (core / "bad.py").write_text("from .._utils._slots import write_slots\n")
    (tmp_path / "tl").mkdir()
    (tmp_path / "tl" / "bad.py").write_text("from ..metrics import ari\n")
    (tmp_path / "_utils").mkdir()
    (tmp_path / "_utils" / "fine.py").write_text("from .._core.bad import x\nimport numpy\n")
    assert violations(tmp_path) == ["_core/bad.py:1 imports _utils", "tl/bad.py:1 imports metrics"]


@pytest.mark.parametrize("unit", sorted(RANK))
def test_every_unit_exists(unit):
    assert (PACKAGE / unit).is_dir() or (PACKAGE / f"{unit}.py").exists(), unit


def test_import_and_command_help_do_not_load_torch():
    # torch takes 1-2 s to import: ``import scintegrate`` and every --help stay without it
    code = textwrap.dedent(
        """
        import contextlib, io, sys
        import scintegrate
        from scintegrate.cli import main

        for args in (["--help"], ["mmdma", "--help"], ["scjmt", "--help"], ["etm", "--help"]):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                main(args)
            assert "torch" not in sys.modules, f"{args} imported torch"
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]

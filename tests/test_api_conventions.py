"""Every public function follows the scanpy conventions of conventions.md."""

from __future__ import annotations

import inspect

import pytest

import scintegrate as si

NAMESPACES = {"tl": si.tl, "pp": si.pp, "pl": si.pl, "metrics": si.metrics, "datasets": si.datasets}
FUNCTIONS = [
    (f"{ns}.{name}", getattr(module, name))
    for ns, module in NAMESPACES.items()
    for name in module.__all__
    if not inspect.isclass(getattr(module, name))  # model classes are not scanpy-style functions
]
FIRST_PARAMS = {
    "tl": {"adata", "mdata"},
    "pp": {"adata", "mdata"},
    "pl": {"adata", "mdata"},
    "metrics": {"data", "adata", "labels_true", "embedding", "x"},
}
# a size-like parameter may stay positional after the data
POSITIONAL_OK = {
    "n_components",
    "n_top",
    "labels",
    "labels_pred",
    "key",
    "n_topics",
    "n_dims",
    "n_clusters",
    "y",
}


def test_every_namespace_exports_something_or_is_planned():
    assert si.tl.__all__ and si.pl.__all__ and si.metrics.__all__ and si.datasets.__all__
    for module in NAMESPACES.values():
        for name in module.__all__:
            assert callable(getattr(module, name)), name


@pytest.mark.parametrize(("name", "func"), FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_signature_conventions(name, func):
    namespace = name.split(".")[0]
    params = list(inspect.signature(func).parameters.values())
    if namespace == "datasets":
        assert all(p.kind is p.KEYWORD_ONLY for p in params), "dataset options are keyword-only"
        return
    assert params, f"{name} takes no data"
    assert params[0].name in FIRST_PARAMS[namespace], f"{name}: first parameter {params[0].name!r}"
    positional = [p for p in params[1:] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert len(positional) <= 2, f"{name}: options after the data must be keyword-only"
    assert all(p.name in POSITIONAL_OK for p in positional), (
        f"{name}: positional {[p.name for p in positional]} should be keyword-only"
    )
    if namespace in ("tl", "pp"):
        names = [p.name for p in params if p.kind is not p.VAR_KEYWORD]
        assert names[-2:] == ["key_added", "copy"], f"{name}: key_added and copy come last"
        assert params[-1].default is False
        assert "random_state" in names or namespace == "pp"
    if namespace == "pl":
        names = {p.name for p in params}
        assert {"show", "return_fig"} <= names, f"{name}: plots take show and return_fig"


@pytest.mark.parametrize(("name", "func"), FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_docstrings(name, func):
    doc = inspect.getdoc(func)
    assert doc, f"{name} has no docstring"
    assert "Returns\n-------" in doc, f"{name}: numpydoc Returns section missing"
    params = [
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if params:
        section = doc.split("Parameters\n----------", 1)
        assert len(section) == 2, f"{name}: Parameters section missing"
        documented = section[1]
        for param in params:
            assert any(
                line.split(":")[0].strip() == param or param in [s.strip() for s in line.split(",")]
                for line in documented.splitlines()
                if line and not line.startswith(" ")
            ), f"{name}: parameter {param!r} is not documented"
    if name.startswith(("tl.", "pp.")):
        returns = doc.split("Returns\n-------", 1)[1]
        assert "uns[" in returns, f"{name}: Returns must list the slots written (uns[...)"
        # tools write an embedding; preprocessing may write layers, var or obs columns instead
        slots = ("obsm[",) if name.startswith("tl.") else ("obsm[", "layers[", "var[", "obs[")
        assert any(slot in returns for slot in slots), f"{name}: Returns must list its {slots}"

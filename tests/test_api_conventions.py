"""Every public function and model class follows the conventions of docs/contributing/conventions.md."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
from _public_calls import CALLS, assert_same, snapshot

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
# tools that read an existing factorisation and write tables and labels: deterministic (no
# random_state) and without a new embedding
ANALYSIS_TOOLS = {"tl.factor_markers"}
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
    "embeddings",
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
        assert "random_state" in names or namespace == "pp" or name in ANALYSIS_TOOLS
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
        embeds = name.startswith("tl.") and name not in ANALYSIS_TOOLS
        slots = ("obsm[",) if embeds else ("obsm[", "layers[", "var[", "obs[")
        assert any(slot in returns for slot in slots), f"{name}: Returns must list its {slots}"


MODELS = [getattr(si.tl, name) for name in si.tl.__all__ if inspect.isclass(getattr(si.tl, name))]


def test_every_tool_has_a_small_call():
    tools = {name for name, _ in FUNCTIONS if name.startswith(("tl.", "pp."))}
    assert tools == set(CALLS), "add the new tool to tests/_public_calls.py"


@pytest.mark.parametrize(("name", "func"), FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_return_annotation(name, func):
    assert inspect.signature(func).return_annotation is not inspect.Signature.empty, name


@pytest.mark.parametrize("cls", MODELS, ids=[c.__name__ for c in MODELS])
def test_model_methods_are_annotated(cls):
    for attr, member in vars(cls).items():
        if attr.startswith("_") or not callable(getattr(member, "__func__", member)):
            continue
        func = getattr(member, "__func__", member)
        assert inspect.signature(func).return_annotation is not inspect.Signature.empty, (
            f"{cls.__name__}.{attr}"
        )


@pytest.mark.parametrize("name", sorted(CALLS))
def test_copy_semantics_and_input_unchanged(name):
    func, make, kwargs = CALLS[name]
    data = make()
    before = snapshot(data)
    out = func(data, **kwargs, copy=True)
    assert out is not None and out is not data, f"{name}(copy=True) must return a new object"
    assert_same(before, data, where=f"{name}(copy=True) input")
    in_place = func(data, **kwargs)
    if name == "pp.gene_activity":  # documented: always returns the new cells x genes AnnData
        assert in_place is not None
        return
    assert in_place is None, f"{name}(copy=False) must return None"
    assert _slot_names(data) == _slot_names(out), f"{name}: copy and in place differ"
    # a second call with the same key leaves exactly the slots of one call
    slots = _slot_names(data)
    func(data, **kwargs)
    assert _slot_names(data) == slots, name


def _slot_names(data) -> dict:
    """Names in every slot mapping of an AnnData, or of a MuData and each of its modalities."""
    names = {
        attr: set(getattr(data, attr).keys())
        for attr in ("obs", "obsm", "varm", "obsp", "layers", "uns")
        if getattr(data, attr, None) is not None
    }
    for mod, adata in getattr(data, "mod", {}).items():
        names |= {f"{mod}:{attr}": keys for attr, keys in _slot_names(adata).items()}
    return names


def _trained_models():
    _, adata_etm = CALLS["tl.etm"][1:], CALLS["tl.etm"][1]()
    etm = si.tl.etm(adata_etm, **CALLS["tl.etm"][2], return_model=True)
    inmf_data = CALLS["tl.online_inmf"][1]()
    inmf = si.tl.online_inmf(inmf_data, **CALLS["tl.online_inmf"][2], return_model=True)
    return {"ETMModel": (etm, adata_etm), "OnlineINMFModel": (inmf, inmf_data)}


def test_models_share_one_vocabulary(tmp_path):
    models = _trained_models()
    assert {type(m).__name__ for m, _ in models.values()} == {c.__name__ for c in MODELS}
    for name, (model, adata) in models.items():
        assert isinstance(model.n_components, int), name
        assert isinstance(model.var_names, pd.Index), name
        assert isinstance(model.history, pd.DataFrame), name
        assert isinstance(inspect.getattr_static(type(model), "load"), classmethod), name
        embedding = model.transform(adata)
        assert embedding.shape == (adata.n_obs, model.n_components), name
        path = tmp_path / f"{name}.model"
        model.save(path)
        again = type(model).load(path)
        np.testing.assert_array_equal(again.transform(adata), embedding, err_msg=name)


def _core_pairs():
    from scintegrate._core.inmf import fit_inmf
    from scintegrate._core.mmdma import fit_mmdma
    from scintegrate._core.nmf import fit_nmf
    from scintegrate._core.uinmf import fit_uinmf

    return [
        (si.tl.nmf, fit_nmf),
        (si.tl.mmdma, fit_mmdma),
        (si.tl.inmf, fit_inmf),
        (si.tl.uinmf, fit_uinmf),
    ]


@pytest.mark.parametrize(("tool", "core"), _core_pairs(), ids=lambda f: f.__qualname__)
def test_core_defaults_do_not_drift_from_the_tool(tool, core):
    # where a numerical core keeps defaults of its own (for tests and benchmarks), they must be
    # the tool's: the tool's signature is the one place users read them
    tool_params = inspect.signature(tool).parameters
    renamed = {"random_state": "rng"}
    for name, param in inspect.signature(core).parameters.items():
        tool_name = next((t for t, c in renamed.items() if c == name), name)
        if param.default is inspect.Parameter.empty or tool_name not in tool_params:
            continue
        if name in ("random_state", "rng", "progress", "device", "dtype", "callback"):
            continue
        expected = tool_params[tool_name].default
        if expected == "auto":  # the tool resolves "auto"; the core takes the resolved value
            continue
        assert param.default == expected, (
            f"{core.__qualname__}({name}={param.default!r}) != {expected!r}"
        )

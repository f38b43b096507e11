"""The Galaxy tools of galaxy/: generated from the command line, and their ``<tests>`` executed.

Galaxy itself cannot be installed here (offline), so each ``<test>`` runs the way Galaxy would
run it, with Galaxy's own pieces where they install as a library (galaxy-tool-util): the tool is
parsed by ``get_tool_source`` (macros expanded), the test's parameters are read by
``parse_tests_to_dict``, the parameter namespace is built as Galaxy builds it (sections and
conditionals nested, defaults for what the test leaves out, values checked by the parameters'
validators and sanitized by Galaxy's default sanitizer, inputs as ``dataset_N.dat`` paths that
carry no extension, outputs as paths in the job folder), the ``<command>`` is filled by Galaxy's
Cheetah ``fill_template`` and flattened to one line as Galaxy does, run by bash in a fresh job
folder with the ``scintegrate`` of this environment, and the exit code, ``expect_num_outputs``,
the outputs' datatypes and the ``<assert_contents>``/``<assert_stderr>`` are checked with
Galaxy's ``verify_assertions``.

The first test of each tool runs by default; the others are marked ``slow``. The jobs of the
selected tests run two at a time (``SCINTEGRATE_GALAXY_WORKERS``) as soon as the first starts.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("galaxy.tool_util", reason="galaxy-tool-util (the test extra) is not installed")

from galaxy.tool_util.parser import get_tool_source
from galaxy.tool_util.verify.asserts import verify_assertions
from galaxy.util import sanitize_param
from galaxy.util.template import fill_template

ROOT = Path(__file__).resolve().parents[2]
GALAXY = ROOT / "galaxy"
TEST_DATA = GALAXY / "test-data"
TOOLS = sorted(GALAXY.glob("scintegrate_*.xml"))

# Galaxy datatypes and the types they are "of" (their parents in Galaxy's datatype registry)
DATATYPE_PARENTS = {
    "h5ad": {"h5", "binary", "data"},
    "h5mu": {"h5", "binary", "data"},
    "h5": {"binary", "data"},
    "binary": {"data"},
    "npz": {"binary", "data"},
    "gtf": {"gff", "interval", "tabular", "txt", "data"},
    "gff3": {"gff", "interval", "tabular", "txt", "data"},
    "gff": {"interval", "tabular", "txt", "data"},
    "bed": {"interval", "tabular", "txt", "data"},
    "tabular": {"txt", "data"},
    "txt": {"data"},
}


# --- what Galaxy puts in the template's namespace ----------------------------------------------


class Value:
    """A parameter value as Galaxy's InputValueWrapper shows it: ``str`` is the sanitized value
    ("" for None), truth is the value's."""

    def __init__(self, value: Any, text: str | None = None) -> None:
        self.value = value
        self.text = text

    def __str__(self) -> str:
        if self.text is not None:
            return self.text
        return "" if self.value is None else sanitize_param(str(self.value))

    def __bool__(self) -> bool:
        return bool(self.value)

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


class Dataset:
    """A dataset as Galaxy's DatasetFilenameWrapper shows it (``None`` path: an optional input
    left empty, which is false)."""

    def __init__(self, path: Path | None, ext: str = "data", identifier: str = "") -> None:
        self.file_name = str(path) if path else None
        self.ext = ext
        self.element_identifier = identifier
        self.name = identifier

    def __str__(self) -> str:
        return self.file_name or "None"

    def __bool__(self) -> bool:
        return self.file_name is not None

    def is_of_type(self, *exts: str) -> bool:
        if not self:
            return False
        return bool(({self.ext} | DATATYPE_PARENTS.get(self.ext, set())) & set(exts))


def _param_name(elem) -> str:
    return elem.get("name") or elem.get("argument").lstrip("-").replace("-", "_")


def _check_validators(elem, text: str, where: str) -> None:
    optional = elem.get("optional") == "true"
    if optional and text.strip() == "":
        return
    for validator in elem.findall("validator"):
        kind = validator.get("type")
        if kind == "empty_field" and not text.strip():
            raise AssertionError(f"{where}: empty value refused by its validator")
        if kind == "regex" and re.match(validator.text, text) is None:
            raise AssertionError(f"{where}: {text!r} refused by {validator.text!r}")


class Job:
    """One test of one tool, set up in a job folder."""

    def __init__(self, tool_source, test: dict, folder: Path) -> None:
        self.folder = folder
        self.inputs_dir = folder / "inputs"
        self.inputs_dir.mkdir(parents=True)
        self.work = folder / "working"
        self.work.mkdir()
        self.n_datasets = 0
        self.given = {name: (value, attrib) for name, value, attrib in _test_inputs(test)}
        self.used: set[str] = set()
        root = tool_source.xml_tree.getroot()
        self.raw: dict[str, Any] = {}
        self.namespace = self.fill(root.find("inputs"), "", self.raw)
        unused = set(self.given) - self.used
        assert not unused, f"test parameters that match no tool parameter: {sorted(unused)}"
        self.outputs = self.output_files(root.find("outputs"))

    def dataset(self, name: str, ext: str) -> Dataset:
        """Test-data file ``name`` as Galaxy stores it: ``dataset_N.dat``, no extension."""
        source = TEST_DATA / name
        assert source.is_file(), f"no test-data file {name}"
        self.n_datasets += 1
        path = self.inputs_dir / f"dataset_{self.n_datasets}.dat"
        path.symlink_to(source)
        return Dataset(path, ext, name)

    def fill(self, parent, prefix: str, raw: dict) -> dict[str, Any]:
        namespace: dict[str, Any] = {}
        for elem in parent:
            if elem.tag == "param":
                name = _param_name(elem)
                namespace[name] = self.param(elem, prefix + name, raw)
            elif elem.tag == "section":
                name = elem.get("name")
                raw[name] = {}
                namespace[name] = self.fill(elem, f"{prefix}{name}|", raw[name])
            elif elem.tag == "conditional":
                name = elem.get("name")
                raw[name] = {}
                test_param = elem.find("param")
                selector = self.param(
                    test_param, f"{prefix}{name}|{_param_name(test_param)}", raw[name]
                )
                when = next(w for w in elem.findall("when") if w.get("value") == str(selector))
                namespace[name] = self.fill(when, f"{prefix}{name}|", raw[name])
                namespace[name][_param_name(test_param)] = selector
        return namespace

    def param(self, elem, key: str, raw: dict) -> Any:
        kind = elem.get("type")
        name = _param_name(elem)
        given = self.given.get(key)
        if given is not None:
            self.used.add(key)
        if kind == "data":
            if given is None:
                assert elem.get("optional") == "true", (
                    f"{key}: a required dataset the test does not give"
                )
                raw[name] = None
                return [] if elem.get("multiple") == "true" else Dataset(None)
            value, attrib = given
            ftype = attrib.get("ftype") or value.rsplit(".", 1)[-1]
            allowed = set(elem.get("format").split(","))
            assert ({ftype} | DATATYPE_PARENTS.get(ftype, set())) & allowed, (
                f"{key}: {ftype} not in {allowed}"
            )
            datasets = [self.dataset(v.strip(), ftype) for v in value.split(",")]
            raw[name] = datasets
            if elem.get("multiple") == "true":
                return datasets
            assert len(datasets) == 1, f"{key}: several files for a single dataset"
            return datasets[0]
        if kind == "boolean":
            text = given[0] if given else elem.get("checked", "false")
            value = text.lower() == "true"
            raw[name] = value
            return Value(value, elem.get("truevalue" if value else "falsevalue", str(value)))
        if kind == "select":
            options = [o.get("value") for o in elem.findall("option")]
            selected = [
                o.get("value") for o in elem.findall("option") if o.get("selected") == "true"
            ]
            text = given[0] if given else (selected or options)[0]
            assert text in options, f"{key}: {text!r} is not one of {options}"
            raw[name] = text
            return Value(text)
        text = given[0] if given else elem.get("value", "")
        text = "" if text is None else text
        _check_validators(elem, text, key)
        if text == "" and kind in ("integer", "float"):
            assert elem.get("optional") == "true", f"{key}: a required number is empty"
            value = None
        elif kind == "integer":
            value = int(text)
        elif kind == "float":
            value = float(text)
        else:
            value = text
        raw[name] = value
        return Value(value)

    def output_files(self, outputs) -> dict[str, tuple[Path, str]]:
        """Output name -> (path, datatype Galaxy would give it), filters applied."""
        files = {}
        for data in outputs.findall("data"):
            name = data.get("name")
            flt = data.find("filter")
            if flt is not None and not eval(flt.text, {}, dict(self.raw)):  # as Galaxy does
                continue
            if data.get("format_source"):
                source = self.raw[data.get("format_source")]
                ext = source[0].ext
            else:
                ext = data.get("format")
            for change in data.findall("change_format/when"):
                if str(self.raw.get(change.get("input"))) == change.get("value"):
                    ext = change.get("format")
            files[name] = (self.folder / "outputs" / f"{name}.dat", ext)
        (self.folder / "outputs").mkdir()
        return files

    def command_line(self, command: str) -> str:
        context = dict(self.namespace)
        context.update({name: Dataset(path, ext) for name, (path, ext) in self.outputs.items()})
        text = fill_template(command, context=context, python_template_version="3")
        # Galaxy strips every line and joins them with spaces
        return " ".join(line.strip() for line in text.split("\n")).strip()


def _test_inputs(test: dict) -> list[tuple[str, str, dict]]:
    out = []
    for item in test["inputs"]:
        if isinstance(item, dict):
            out.append((item["name"], item["value"], item.get("attributes", {})))
        else:
            name, value, attrib = item
            out.append((name, value, attrib))
    return out


def _cases() -> list[Any]:
    cases = []
    for path in TOOLS:
        tests = get_tool_source(str(path)).parse_tests_to_dict()["tests"]
        assert tests, f"{path.name} has no test"
        for i in range(len(tests)):
            marks = [pytest.mark.slow] if i else []
            cases.append(pytest.param(path, i, id=f"{path.stem}-{i + 1}", marks=marks))
    return cases


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALAXY_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    if (ROOT / "src" / "scintegrate").is_dir():  # this checkout's package, as the other tests use
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])
        )
    return env


@dataclass
class Outcome:
    test: dict
    job: Job
    command: str
    run: subprocess.CompletedProcess


def run_test(tool: Path, index: int, folder: Path) -> Outcome:
    """Set up the job folder of one test, fill the command and run it."""
    source = get_tool_source(str(tool))
    test = source.parse_tests_to_dict()["tests"][index]
    job = Job(source, test, folder)
    command = job.command_line(source.parse_command())
    (folder / "home").mkdir()
    (job.work / "tool_script.sh").write_text(command + "\n")
    run = subprocess.run(
        ["bash", "-e", "tool_script.sh"],
        cwd=job.work,
        env=_environment(folder / "home"),
        capture_output=True,
        timeout=600,
    )
    return Outcome(test, job, command, run)


class Runner:
    """Runs the jobs of the selected tests, ``WORKERS`` at a time (each job is one process that
    spends most of its few seconds importing, so two cores run two at once)."""

    def __init__(self, tmp_factory: pytest.TempPathFactory) -> None:
        self.tmp_factory = tmp_factory
        self.pool = ThreadPoolExecutor(max_workers=WORKERS)
        self.futures: dict[tuple[Path, int], Future] = {}

    def submit(self, tool: Path, index: int) -> Future:
        key = (tool, index)
        if key not in self.futures:
            folder = self.tmp_factory.mktemp(f"{tool.stem}-{index + 1}")
            self.futures[key] = self.pool.submit(run_test, tool, index, folder)
        return self.futures[key]


WORKERS = int(os.environ.get("SCINTEGRATE_GALAXY_WORKERS", min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def runner(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    runner = Runner(tmp_path_factory)
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # xdist shares the tests out itself
        for item in request.session.items:
            if (
                getattr(item, "originalname", None) == "test_tool"
                and item.module.__name__ == __name__
            ):
                runner.submit(item.callspec.params["tool"], item.callspec.params["index"])
    yield runner
    runner.pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize(("tool", "index"), _cases())
def test_tool(tool: Path, index: int, runner: Runner) -> None:
    outcome = runner.submit(tool, index).result()
    test, job, command, run = outcome.test, outcome.job, outcome.command, outcome.run
    report = f"command: {command}\nexit code {run.returncode}\nstderr:\n{run.stderr.decode(errors='replace')[-3000:]}"
    if test.get("expect_exit_code") is not None:
        assert run.returncode == int(test["expect_exit_code"]), report
    elif test.get("expect_failure"):
        assert run.returncode != 0, report
    else:
        assert run.returncode == 0, report
    if test.get("stderr"):
        verify_assertions(run.stderr, test["stderr"])
    if test.get("expect_failure"):
        return
    if test.get("expect_num_outputs") is not None:
        assert len(job.outputs) == int(test["expect_num_outputs"]), (sorted(job.outputs), report)
    for output in test["outputs"]:
        name, attributes = output["name"], output["attributes"]
        path, ext = job.outputs[name]
        assert path.is_file(), f"output {name} was not written\n{report}"
        if attributes.get("ftype"):
            assert ext == attributes["ftype"], f"output {name}: Galaxy would call it {ext}"
        verify_assertions(path.read_bytes(), attributes["assert_list"] or [])


# --- the XMLs are the generator's output ----------------------------------------------------------


def _make_tools():
    spec = importlib.util.spec_from_file_location("make_tools", GALAXY / "make_tools.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_tools"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_tools_match_generator() -> None:
    """The committed XMLs (and macros.xml with the package version) are make_tools.py's output,
    so the tools carry every option of the command line, with its current default and help."""
    files = _make_tools().generate()
    for name, text in files.items():
        path = GALAXY / name
        assert path.is_file() and path.read_text() == text, (
            f"galaxy/{name} is stale: run python galaxy/make_tools.py"
        )
    assert sorted(p.name for p in TOOLS) == sorted(n for n in files if n != "macros.xml")


def test_text_values_cannot_break_out_of_quotes(tmp_path: Path) -> None:
    """A text value with quotes, $ and ; stays one word of the command (Galaxy's sanitizer plus
    the template's single quotes), and an optional field left empty passes nothing."""
    source = get_tool_source(str(GALAXY / "scintegrate_nmf.xml"))
    test = {
        "inputs": [
            ("input", "cortex_rna.h5ad", {"ftype": "h5ad"}),
            ("labels_key", "cell'; touch pwned; echo '$(id)", {}),
        ]
    }
    job = Job(source, test, tmp_path)
    words = shlex.split(job.command_line(source.parse_command()))
    value = words[words.index("--labels-key") + 1]
    assert "'" not in value and "$" not in value and "touch" in value
    assert "--layer" not in words  # optional and empty
    assert words[words.index("--max-iter") + 1] == "200"  # the function's default


def test_every_test_data_file_is_used() -> None:
    used = set()
    for path in TOOLS:
        for test in get_tool_source(str(path)).parse_tests_to_dict()["tests"]:
            for _, value, _ in _test_inputs(test):
                used |= {v.strip() for v in str(value).split(",")}
    data = {p.name for p in TEST_DATA.iterdir() if p.suffix != ".py"}
    assert data - used == set(), f"test-data files no tool test uses: {sorted(data - used)}"

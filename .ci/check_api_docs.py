"""Check that docs/api.md lists every public name exactly once, in its namespace's section.

Public names are those in ``scintegrate.<namespace>.__all__`` for the namespaces pp, tl, pl,
metrics and datasets. A name listed in docs/api.md under the wrong section, listed twice, listed
but not public, or public but not listed, is reported and the script exits with status 1.

Run from the repository root: ``python .ci/check_api_docs.py``.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections import Counter
from pathlib import Path

API = Path(__file__).resolve().parents[1] / "docs" / "api.md"
# the "## " section of docs/api.md that holds each namespace
SECTIONS = {
    "tl": "Tools",
    "pp": "Preprocessing",
    "pl": "Plots",
    "metrics": "Metrics",
    "datasets": "Datasets",
}
ENTRY = re.compile(r"^ {3}(\w+)\.(\w+)$")  # an autosummary entry such as "   tl.nmf"


def listed(text: str) -> list[tuple[str, str, str]]:
    """(section, namespace, name) of every autosummary entry, in the order of the page."""
    section = ""
    entries = []
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        match = ENTRY.match(line)
        if match:
            entries.append((section, match.group(1), match.group(2)))
    return entries


def problems(text: str) -> list[str]:
    """Every way in which the page and the namespaces' ``__all__`` disagree."""
    entries = listed(text)
    found = []
    counts = Counter((ns, name) for _, ns, name in entries)
    found += [f"{ns}.{name} is listed {n} times" for (ns, name), n in counts.items() if n > 1]
    public = set()
    for ns in SECTIONS:
        module = importlib.import_module(f"scintegrate.{ns}")
        public |= {(ns, name) for name in module.__all__}
    for section, ns, name in entries:
        if (ns, name) not in public:
            found.append(f"{ns}.{name} is listed but not in scintegrate.{ns}.__all__")
        elif section != SECTIONS[ns]:
            found.append(f"{ns}.{name} is listed under {section!r}, not {SECTIONS[ns]!r}")
    found += [f"{ns}.{name} is public but not listed" for ns, name in sorted(public - set(counts))]
    return found


def main() -> int:
    found = problems(API.read_text())
    for problem in found:
        print(f"docs/api.md: {problem}", file=sys.stderr)
    if not found:
        print(f"docs/api.md lists every public name once ({len(listed(API.read_text()))}).")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

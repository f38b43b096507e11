"""Sphinx configuration of the scintegrate documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` after
``pip install -e ".[doc]"``; CI (``.ci/run``) builds it so, warnings being errors. The build reads
nothing from the network: notebooks are rendered with the outputs stored in them (nothing is
executed) and there is no intersphinx (it would fetch other projects' inventories), so references
to numpy, AnnData and the like render as code without a link.
"""

from __future__ import annotations

import importlib.util
import warnings
from datetime import date

import scintegrate

# sphinx-autodoc-typehints calls a Sphinx API deprecated for Sphinx 10, once per docstring: its
# concern, not ours, and not a Sphinx warning (which -W would turn into an error)
warnings.filterwarnings(
    "ignore", message=".*set_application.* is deprecated", module="sphinx_autodoc_typehints"
)

# -- project -------------------------------------------------------------------------------------

project = "scintegrate"
author = "scintegrate developers"
copyright = f"{date.today().year}, {author}"
version = release = scintegrate.__version__

# -- general -------------------------------------------------------------------------------------

extensions = [
    "myst_nb",  # Markdown pages and Jupyter notebooks (includes myst-parser)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",  # after napoleon: types from annotations into the parameter list
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",  # the command line's reference, from its argparse parser
]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path = ["_templates"]
default_role = "literal"  # `x` in a docstring renders as code, as in numpydoc

# -- MyST and notebooks --------------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # show the outputs saved in the notebooks; never execute them
nb_merge_streams = True

# -- API reference -------------------------------------------------------------------------------

autosummary_generate = True
autodoc_member_order = "bysource"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = True
napoleon_use_ivar = True  # "Attributes" of an instance (si.settings) as a field list
# the annotated return type as a field of its own: merged into the Returns section, it breaks the
# indentation of Returns sections that list several slots
typehints_use_rtype = True

# -- HTML ----------------------------------------------------------------------------------------

html_title = "scintegrate"
if importlib.util.find_spec("sphinx_book_theme") is not None:
    html_theme = "sphinx_book_theme"
    html_theme_options = {
        "repository_url": "https://github.com/scverse/scintegrate",
        "repository_branch": "main",
        "path_to_docs": "docs",
        "use_repository_button": True,
    }
else:
    html_theme = "alabaster"

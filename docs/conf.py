"""Sphinx configuration of the scintegrate documentation.

Build with ``sphinx-build -b html docs docs/_build/html`` after ``pip install -e ".[doc]"``.
Notebooks are rendered with the outputs stored in them; nothing is executed.
"""

from __future__ import annotations

import importlib.util
from datetime import date

import scintegrate

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
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path = ["_templates"]
default_role = "literal"  # `x` in a docstring renders as code, as in numpydoc

# -- MyST and notebooks --------------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # show the outputs saved in the notebooks
nb_merge_streams = True

# -- API reference -------------------------------------------------------------------------------

autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = True
napoleon_use_ivar = True  # "Attributes" of an instance (si.settings) as a field list

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable", None),
    "pandas": ("https://pandas.pydata.org/docs", None),
    "matplotlib": ("https://matplotlib.org/stable", None),
}
intersphinx_timeout = 10

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

"""``python -m scintegrate.cli``: the same as the ``scintegrate`` command."""

import sys

from . import main

sys.exit(main())

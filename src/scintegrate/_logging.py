"""The package logger. We never configure the root logger; users opt in to output."""

import logging

logger = logging.getLogger("scintegrate")

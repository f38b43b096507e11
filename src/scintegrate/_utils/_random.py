"""One source of randomness per call: a numpy Generator from ``random_state``."""

from __future__ import annotations

import numpy as np

RandomState = int | np.random.Generator | None


def get_rng(random_state: RandomState) -> np.random.Generator:
    """Return a Generator; an int or None seeds a new one, a Generator is used as is."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is not None and (
        isinstance(random_state, bool) or not isinstance(random_state, int | np.integer)
    ):
        raise ValueError(
            f"random_state must be an int, None or a numpy Generator, got {random_state!r}."
        )
    return np.random.default_rng(random_state)

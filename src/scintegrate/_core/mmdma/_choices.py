"""The option values of the MMD-MA core that need no torch (validated before torch is imported)."""

BACKENDS = ("auto", "torch", "keops")
FORMULATIONS = ("primal", "dual")
# random starts of the rotation search (init="rotation_search"): at most this many restarts
ROTATION_SEARCH_STARTS = 128

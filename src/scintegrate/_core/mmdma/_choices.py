"""The option values of the MMD-MA core that need no torch (validated before torch is imported)."""

BACKENDS = ("auto", "torch", "keops")
FORMULATIONS = ("primal", "dual")

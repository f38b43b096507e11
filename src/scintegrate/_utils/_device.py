"""Resolve ``device`` arguments: "auto" means CUDA when present, else CPU (never MPS)."""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """Return ``"cpu"`` or ``"cuda[:n]"`` for a user's ``device`` argument."""
    if not isinstance(device, str):
        raise ValueError(
            f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}."
        )
    name = device.lower()
    if name == "cpu":
        return "cpu"
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but no CUDA device is available; "
                "use device='cpu' or device='auto'."
            )
        return name
    raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'cuda:N'.")

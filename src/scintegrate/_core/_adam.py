"""Adam without ``torch.optim``.

Constructing the first ``torch.optim`` optimizer of a process imports ``torch._dynamo``, a cost
paid again by every new process and a large share of a short fit. Measured on 2026-12-03 (torch
2.13.0+cpu, 2 cores shared with other jobs, load 3-5), each in a fresh process: the first
``torch.optim.Adam([...])`` took 0.92-2.02 s (14 runs, median about 1.3 s) after ``import torch``
(1.0-1.9 s itself); ``python -X importtime`` puts ``torch._dynamo`` at 1.06 s cumulative. That is
well above what this module costs to keep, so it stays. The update here is the one
``torch.optim.Adam`` computes (no weight decay, no amsgrad): the same in-place operations as its
single-tensor path, or with ``fused=True`` the very kernel of ``torch.optim.Adam(fused=True)`` on
CPU and CUDA (``tests/_core/test_adam.py`` checks both bit for bit against ``torch.optim``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_FUSED_DEVICES = ("cpu", "cuda")


class Adam:
    """Adam over ``params`` with one learning rate per tensor (Kingma & Ba 2015).

    Parameters
    ----------
    params
        The tensors to update in place.
    lr
        One learning rate for all, or one per tensor.
    betas, eps
        As in :class:`torch.optim.Adam`.
    fused
        Use torch's fused Adam kernel (one pass over all tensors) where the device has one;
        elsewhere, and with ``fused=False``, a few in-place operations per tensor.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lr: float | Sequence[float],
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        fused: bool = False,
    ) -> None:
        self.params = list(params)
        lrs = [lr] * len(self.params) if isinstance(lr, int | float) else list(lr)
        if len(lrs) != len(self.params):
            raise ValueError(f"{len(lrs)} learning rates for {len(self.params)} tensors.")
        self.lrs = [float(value) for value in lrs]
        self.betas, self.eps = betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.fused = fused and all(p.device.type in _FUSED_DEVICES for p in self.params)
        # steps are counted per tensor, as torch.optim does (a skipped tensor's bias correction
        # does not advance); the fused kernel takes them as float32 tensors
        self._steps = (
            [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
            if self.fused
            else [0] * len(self.params)
        )

    def zero_grad(self) -> None:
        """Drop the gradients held by the parameters (``set_to_none``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor | None] | None = None, factor: float = 1.0) -> None:
        """One update with ``grads`` (default: each parameter's ``.grad``; ``None`` skips it).

        ``factor`` multiplies every learning rate for this step (a schedule).
        """
        if grads is None:
            grads = [p.grad for p in self.params]
        if self.fused:
            self._fused_step(grads, factor)
            return
        b1, b2 = self.betas
        for i, (w, g, m, v, lr) in enumerate(
            zip(self.params, grads, self.m, self.v, self.lrs, strict=True)
        ):
            if g is None:
                continue
            self._steps[i] += 1
            t = self._steps[i]
            c1, c2 = 1 - b1**t, math.sqrt(1 - b2**t)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            w.addcdiv_(m, (v.sqrt() / c2).add_(self.eps), value=-lr * factor / c1)

    def _fused_step(self, grads, factor: float) -> None:
        groups: dict[float, list[int]] = {}
        for i, (g, lr) in enumerate(zip(grads, self.lrs, strict=True)):
            if g is not None:
                groups.setdefault(lr * factor, []).append(i)
        for lr, members in groups.items():
            steps = [self._steps[i] for i in members]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(
                [self.params[i] for i in members],
                [grads[i] for i in members],
                [self.m[i] for i in members],
                [self.v[i] for i in members],
                [],
                steps,
                amsgrad=False,
                lr=lr,
                beta1=self.betas[0],
                beta2=self.betas[1],
                weight_decay=0.0,
                eps=self.eps,
                maximize=False,
            )

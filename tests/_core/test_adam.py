"""The package's Adam (``_core._adam``) against ``torch.optim.Adam``, and what it saves."""

import subprocess
import sys
import textwrap

import pytest
import torch

from scintegrate._core._adam import Adam


def _problem(seed: int, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    params = [
        torch.randn(7, 5, generator=gen, dtype=dtype),
        torch.randn(3, generator=gen, dtype=dtype),
    ]
    target = [torch.randn(p.shape, generator=gen, dtype=dtype) for p in params]
    return params, target


def _loss(params, target, step):
    # a different quartic per step, so that moments and bias corrections all matter
    return sum(
        ((p - t) ** 2).sum() + 0.1 * step * (p**4).sum()
        for p, t in zip(params, target, strict=True)
    )


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torch_optim_adam_bit_for_bit(fused, dtype):
    lr, decay = 0.05, 0.3
    ours, target = _problem(0, dtype)
    theirs = [p.clone() for p in ours]
    start = [p.clone() for p in ours]
    for p in (*ours, *theirs):
        p.requires_grad_(True)
    opt_ours = Adam(ours, lr, fused=fused)
    opt_theirs = torch.optim.Adam(theirs, lr=lr, fused=fused)
    sched = torch.optim.lr_scheduler.LambdaLR(opt_theirs, lambda s: 0.5 ** (decay * s))
    for step in range(25):
        opt_ours.zero_grad()
        _loss(ours, target, step).backward()
        opt_ours.step(factor=0.5 ** (decay * step))
        opt_theirs.zero_grad(set_to_none=True)
        _loss(theirs, target, step).backward()
        opt_theirs.step()
        sched.step()
    for a, b, a0 in zip(ours, theirs, start, strict=True):
        assert torch.equal(a, b)
        assert (a - a0).abs().min() > 1e-3  # every entry moved


def test_per_tensor_learning_rates_explicit_gradients_and_skipped_tensors():
    params, _ = _problem(1)
    start = [p.clone() for p in params]
    opt = Adam(params, [0.1, 0.0])
    opt.step([torch.ones_like(params[0]), None])
    # Adam's first step moves each entry by lr (times the sign of its gradient)
    torch.testing.assert_close(params[0], start[0] - 0.1, rtol=0, atol=1e-6)
    assert torch.equal(params[1], start[1])
    with pytest.raises(ValueError, match="learning rates"):
        Adam(params, [0.1])


@pytest.mark.parametrize("fused", [False, True])
def test_skipped_tensors_keep_their_own_step_count(fused):
    # torch.optim.Adam advances a tensor's bias correction only when it has a gradient
    ours, target = _problem(2)
    theirs = [p.clone() for p in ours]
    for p in (*ours, *theirs):
        p.requires_grad_(True)
    opt_ours = Adam(ours, 0.05, fused=fused)
    opt_theirs = torch.optim.Adam(theirs, lr=0.05, fused=fused)
    for step in range(6):
        for params, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            _loss(params, target, step).backward()
            if step % 2:  # the second tensor gets a gradient every other step only
                params[1].grad = None
            opt.step()
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def test_fits_do_not_import_torch_dynamo():
    # constructing a torch.optim optimizer imports torch._dynamo (1-3 s in a new process)
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import scintegrate as si
        from scintegrate._core.etm import fit_etm

        rng = np.random.default_rng(0)
        X = rng.poisson(1.0, size=(60, 30)).astype(float) + np.eye(60, 30)
        fit_etm(X, 3, emb_dim=4, hidden_sizes=(8,), dropout=0.1, max_epochs=2, batch_size=2000,
                lr=5e-3, lr_decay=6e-5, kl_weight=1.0, kl_warmup=1 / 3, grad_clip=50.0,
                eval_every=10, random_state=rng)
        m = si.datasets.simulate_rna_atac(n_rna=60, n_atac=60, n_types=2, n_genes=40,
                                          n_extra_regions=10, random_state=0)
        si.tl.scjmt(m, n_shared=2, max_iter=2, n_restarts=1, smooth=False)
        md = si.datasets.branch_simulation(n_obs=60, n_features=8, random_state=0)
        si.tl.mmdma(md, n_dims=2, max_epochs=4)
        assert "torch._dynamo" not in sys.modules, "torch._dynamo was imported"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)

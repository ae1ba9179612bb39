"""Cores: the banded attention equals masked full attention; the channels-last conv path equals the plain one."""

from __future__ import annotations

import math

import pytest
import torch

from models import ModelConfig, build_model
from models import precision as prec
from models.cores import local_attention


@pytest.mark.parametrize("length,window", [(5, 8), (64, 8), (100, 8), (130, 3), (200, 1), (65, 64), (130, 70), (33, 8)])
def test_local_attention_is_masked_full_attention(length, window):
    gen = torch.Generator().manual_seed(length * 31 + window)
    q, k, v = (torch.randn(2, 3, length, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    i, j = torch.arange(length)[:, None], torch.arange(length)[None, :]
    band = (j <= i) & (j > i - window)
    scores = (q @ k.transpose(-1, -2) / math.sqrt(4)).masked_fill(~band, float("-inf"))
    want = torch.softmax(scores, dim=-1) @ v
    assert torch.allclose(local_attention(q, k, v, window), want, atol=1e-12)


@pytest.mark.parametrize("length,window,block", [(20, 4, 8), (20, 12, 8), (6, 4, 8)])
def test_local_attention_is_twice_differentiable(monkeypatch, length, window, block):
    # the blocked path (window - 1 <= block) and the unfold one (longer windows); an energy-based model in training
    # differentiates the block's gradient
    monkeypatch.setattr("models.cores.LOCAL_BLOCK", block)
    gen = torch.Generator().manual_seed(length + window)
    q, k, v = (torch.randn(1, 2, length, 3, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradgradcheck(lambda *t: local_attention(*t, window), (q, k, v))


def test_local_attention_trains_after_an_inference_run_of_the_same_shape():
    # the band's mask is cached per shape: one first made under inference mode must not break a later backward
    gen = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(1, 2, 70, 4, generator=gen) for _ in range(3))
    with torch.inference_mode():
        want = local_attention(q, k, v, 5)
    q.requires_grad_(True)
    out = local_attention(q, k, v, 5)
    out.square().sum().backward()
    assert torch.allclose(out.detach(), want) and q.grad is not None and torch.isfinite(q.grad).all()


def test_a_windowed_transformer_sees_no_further_than_its_reach():
    cfg = ModelConfig(family="recursive", arch="transformer", in_channels=1, width=8, depth=1, layers=2, heads=2,
                      window=4)
    model = build_model(cfg, seed=0).eval()
    assert model.reach_per_iteration == (4 - 1) + (cfg.kernel - 1)
    x = torch.zeros(1, 1, 40)
    x2 = x.clone()
    x2[..., 10] = 1.0  # a change at position 10
    with torch.no_grad():
        e1, e2 = model.encoder(x), model.encoder(x2)
        z1 = model.block(torch.zeros_like(e1), e1)
        z2 = model.block(torch.zeros_like(e2), e2)
    moved = ((z1 - z2).abs().amax(dim=1) > 0).nonzero()[:, 1]
    # the encoder (kernel 3, centred) spreads it to 9..11, one block then at most `reach` further right
    assert moved.min() >= 9 and moved.max() <= 11 + model.reach_per_iteration


@pytest.mark.parametrize("arch,shape", [("conv1d", (3, 1, 37)), ("conv2d", (3, 3, 9, 9))])
def test_channels_last_path_equals_the_plain_convolutions(arch, shape):
    cfg = ModelConfig(family="recursive", arch=arch, in_channels=shape[1], width=8, depth=2, layers=3)
    model = build_model(cfg, seed=1).eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(x, 3)
        before = prec.CHANNELS_LAST
        prec.CHANNELS_LAST = False
        try:
            plain = model(x, 3)
        finally:
            prec.CHANNELS_LAST = before
    assert torch.allclose(out, plain, atol=1e-5)

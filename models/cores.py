"""Cores: the block that one iteration (or one explicit layer) applies, for each architecture.

Every block maps (z, e) -> z' where z is the latent state and e the injected input encoding
(the "recall" of the easy-to-hard literature, the "input injection" of DEQs), both with shape
(B, W, *spatial). Convolutions keep the spatial shape, so a block trained on small problems runs on
large ones unchanged.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.nn import functional as F

from . import precision
from .config import ModelConfig


def _conv(dims: int, cin: int, cout: int, k: int, bias: bool = True) -> nn.Module:
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    return cls(cin, cout, k, padding=k // 2, bias=bias)


def as_2d(t: torch.Tensor) -> torch.Tensor:
    """A 1-D map (B, C, L) as a channels-last 2-D one (B, C, 1, L); a 2-D map (B, C, H, W) channels-last. On the
    CPU's oneDNN a 1-D convolution in (B, C, L) order reorders its input and output every call: as a channels-last
    2-D convolution it is 3.4x faster in float32 and 17x faster in bfloat16 (README, Performance: "Precision")."""
    if not precision.CHANNELS_LAST:  # the layout before this change (the bench's baseline)
        return t
    if t.dim() == 3:
        t = t.unsqueeze(2)
    return t.contiguous(memory_format=torch.channels_last)


def from_2d(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A map made by as_2d back in `like`'s rank (its memory order stays channels-last: (B, C, L) with C fastest)."""
    return t.squeeze(2) if like.dim() == 3 and t.dim() == 4 else t


def conv(m: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """Apply a Conv1d or Conv2d module to an as_2d map (a Conv1d's weight is used as a 1 x k kernel)."""
    if isinstance(m, nn.Conv1d) and h.dim() == 4:
        return F.conv2d(h, m.weight.unsqueeze(2), m.bias, stride=1, padding=(0, m.padding[0]),
                        groups=m.groups)
    return m(h)


class GroupNorm(nn.GroupNorm):
    """GroupNorm that normalises a bfloat16 channels-last map in NCHW order: the CPU's group norm on a
    channels-last bfloat16 map is 4.7x slower than on the same map in NCHW (3.0 against 0.64 ms forward and
    backward, batch 32, width 32, 19 x 19, 2 threads), which made a bfloat16 step of a normed model slower than
    a float32 one. Same parameters and state-dict keys as nn.GroupNorm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16 and x.dim() == 4 and not x.is_contiguous():
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(x)


def _norm(cfg: ModelConfig) -> nn.Module:
    # groups must divide the width: 8 when it can, else the largest divisor of 8 that does (width 12 -> 4)
    return GroupNorm(math.gcd(8, cfg.width), cfg.width) if cfg.norm else nn.Identity()


class ConvBlock(nn.Module):
    """z' = act(A z + e) followed by `depth` residual units of two convolutions each. act is ReLU unless the
    family asks for a smooth one (an energy-based model descends the block's gradient: SiLU)."""

    def __init__(self, cfg: ModelConfig, dims: int, act=F.relu):
        super().__init__()
        self.act = act
        w, k = cfg.width, cfg.kernel
        # cells information moves per application along an axis: 1 + 2 x depth convolutions of reach k // 2 each
        self.reach = (1 + 2 * cfg.depth) * (k // 2)
        self.mix = _conv(dims, w, w, k, bias=False)
        self.mix_norm = _norm(cfg)
        self.units = nn.ModuleList(
            nn.ModuleList([_conv(dims, w, w, k, cfg.bias), _norm(cfg), _conv(dims, w, w, k, cfg.bias), _norm(cfg)])
            for _ in range(cfg.depth)
        )

    def forward(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        act = self.act
        with precision.autocast_for(z):  # bf16 runs compute here; the state between blocks stays float32
            h = act(self.mix_norm(conv(self.mix, as_2d(z)) + precision.recalled(self, e, as_2d)))
            for c1, n1, c2, n2 in self.units:
                h = act(h + n2(conv(c2, act(n1(conv(c1, h))))))
        return precision.back(from_2d(h, z), z)


LOCAL_BLOCK = 32  # most query positions per block of the banded attention (docs/precision.md: 32 was fastest in bf16)


@functools.lru_cache(maxsize=16)
def _band_bias(nb: int, c: int, back: int, window: int, dtype, device) -> torch.Tensor:
    """(nb, c, back + c) additive mask of a block of c queries against the `back` keys before the block and its own c:
    0 where key j = b*c - back + u is in query i = b*c + t's window (i - window < j <= i, j >= 0), -inf elsewhere.
    Cached (a looped block asks for the same mask every iteration; a small run's time is mostly such small ops):
    callers must not modify it."""
    with torch.inference_mode(False):  # a mask first made in an inference-mode run must serve training too
        t = torch.arange(c, device=device)[:, None]
        u = torch.arange(back + c, device=device)[None, :]
        j_minus_i = u - back - t
        band = (j_minus_i <= 0) & (j_minus_i > -window)
        first = torch.arange(nb, device=device)[:, None, None] * c - back + u[None] >= 0
        return torch.zeros(band.shape[-2:], dtype=dtype, device=device).expand(nb, -1, -1).masked_fill(
            ~(band[None] & first), float("-inf"))


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor:
    """Causal attention of each position over itself and the window - 1 positions before it, on (B, heads, L, d):
    the same computation at every length (a position never sees further than the window, so a looped block moves
    information at most window - 1 positions per iteration). Computed in blocks of LOCAL_BLOCK queries, each against
    the previous block's last window - 1 keys and its own block's keys (the blocks' keys concatenated once), as
    batched matrix products (the CPU's matrix units) with the band masked by an additive mask: a few times the
    strictly needed products, but no per-offset elementwise passes over memory (torch's
    scaled_dot_product_attention with the band as its mask fell back to a slower unfused path on the CPU). The
    softmax runs in the scores' dtype (bf16 in a bf16 run; autocast would cast the scores to float32 and back).
    Twice differentiable."""
    L, d = q.shape[-2], q.shape[-1]
    nb = -(-L // LOCAL_BLOCK)
    c = -(-L // nb)  # nb equal blocks of at most LOCAL_BLOCK: a length just over a block pads a little, not a block
    back = 0 if nb == 1 else window - 1  # one block: no keys before it
    if back > c:  # a window longer than a block reaches two blocks back
        return _local_attention_unfold(q, k, v, window, c)
    pad_end = nb * c - L
    q, k, v = (F.pad(t, (0, 0, 0, pad_end)) if pad_end else t.contiguous() for t in (q, k, v))
    qb, kc, vc = (t.unflatten(2, (nb, c)) for t in (q, k, v))  # (B, h, nb, c, d), views
    if back:  # keys and values b*c - back .. b*c + c - 1 of each block: the previous block's last `back` (zeros
        # before the first block, masked) and its own
        kc, vc = (torch.cat([F.pad(t[:, :, :-1, c - back:], (0, 0, 0, 0, 1, 0)), t], -2) for t in (kc, vc))
    scores = (qb * (1 / math.sqrt(d))) @ kc.transpose(-1, -2)  # (B, h, nb, c, back + c)
    bias = _band_bias(nb, c, back, window, scores.dtype, q.device)
    with torch.autocast(q.device.type, enabled=False):
        a = torch.softmax(scores + bias, dim=-1)
    return (a @ vc).flatten(2, 3)[..., :L, :]


def _local_attention_unfold(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, c: int) -> torch.Tensor:
    """local_attention for a window longer than a block: each block of c queries against the c + window - 1 keys
    it can see, gathered by unfold (copies of overlapping key windows)."""
    L, d = q.shape[-2], q.shape[-1]
    nb = -(-L // c)
    pad_end = nb * c - L
    span = c + window - 1
    qb = F.pad(q, (0, 0, 0, pad_end)).unflatten(2, (nb, c))  # (B, h, nb, c, d)
    kp = F.pad(k, (0, 0, window - 1, pad_end)).unfold(2, span, c)  # (B, h, nb, d, span): keys b*c-(w-1) .. b*c+c-1
    vp = F.pad(v, (0, 0, window - 1, pad_end)).unfold(2, span, c)
    scores = (qb / math.sqrt(d)) @ kp  # (B, h, nb, c, span)
    bias = _band_bias(nb, c, window - 1, window, scores.dtype, q.device)
    with torch.autocast(q.device.type, enabled=False):
        a = torch.softmax(scores + bias, dim=-1)
    return (a @ vp.transpose(-1, -2)).flatten(2, 3)[..., :L, :]


class TransformerBlock(nn.Module):
    """A pre-norm transformer block over positions, on (B, W, L) tensors.

    Attention is causal (a position sees itself and what came before, the direction the algorithms
    flow) and carries no absolute position embedding, so the block applies at any length; a
    depthwise causal convolution before attention gives it the relative order of neighbours.
    """

    def __init__(self, cfg: ModelConfig, twice_differentiable: bool = False):
        super().__init__()
        w = cfg.width
        self.heads = cfg.heads
        self.window = cfg.window
        # a windowed block moves information window - 1 positions by attention and kernel - 1 by its causal
        # convolution; full attention reaches the whole string in one application (no bound: None)
        self.reach = (cfg.window - 1) + (cfg.kernel - 1) if cfg.window else None
        # torch's fused attention has no double backward on the CPU; a family that differentiates the block's
        # gradient (an energy-based model in training) gets the same attention written out
        self.twice_differentiable = twice_differentiable
        self.local = nn.Conv1d(w, w, cfg.kernel, groups=w, padding=cfg.kernel - 1)
        self.ln1 = nn.LayerNorm(w)
        self.qkv = nn.Linear(w, 3 * w)
        self.proj = nn.Linear(w, w)
        self.ln2 = nn.LayerNorm(w)
        self.mlp = nn.Sequential(nn.Linear(w, 4 * w), nn.GELU(), nn.Linear(4 * w, w))
        # the state leaves every block normalised: looped k times, pre-norm residual streams grow without bound
        self.ln_out = nn.LayerNorm(w)

    def forward(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        with precision.autocast_for(z):  # bf16 runs compute here; the state between blocks stays float32
            return precision.back(self._forward(z, e), z)

    def _forward(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        L = z.shape[-1]
        # the state travels as (B, W, L) with W fastest in memory (the channels-last order every core uses), so the
        # transposes to and from (B, L, W) are views, not copies
        h = z + precision.recalled(self, e, lambda t: t)
        h = h + from_2d(conv(self.local, as_2d(h)), h)[..., :L]  # causal: output i sees inputs i-k+1..i
        h = h.transpose(1, 2)  # (B, L, W)
        B, _, W = h.shape
        q, k, v = self.qkv(self.ln1(h)).split(W, dim=-1)
        q, k, v = (t.view(B, L, self.heads, W // self.heads).transpose(1, 2) for t in (q, k, v))
        if self.window:  # banded (at L <= window the band is the whole causal triangle); twice differentiable
            a = local_attention(q, k, v, self.window)
        elif self.twice_differentiable:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            causal = torch.ones(L, L, dtype=torch.bool, device=z.device).tril()
            a = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1) @ v
        else:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, L, W/heads)
        h = h + self.proj(a.transpose(1, 2).reshape(B, L, W))
        h = h + self.mlp(self.ln2(h))
        return self.ln_out(h).transpose(1, 2)  # (B, W, L)


class RelationalBlock(nn.Module):
    """Message passing between peers on a grid: every cell reads the mean state of the other cells of its row, of
    its column and (on a square grid whose side is a square, such as sudoku's 9 x 9) of its box, the relational step
    of recurrent relational networks (Palm, Paquet and Winther 2018) with the row, column and box as the relations.
    z' = act(A z + e), then `depth` residual units h <- act(h + B act(C [h, row(h), col(h), box(h)])), all maps per
    cell (no kernel: a 3 x 3 convolution would see neighbours, not rows and columns). The state travels as
    (B, W, H, W') channels-last, so the per-cell maps are matrix products over (B * cells, W)."""

    def __init__(self, cfg: ModelConfig, act=F.relu):
        super().__init__()
        self.act = act
        w = cfg.width
        self.reach = None  # a row and a column in one unit: the whole grid within a block of depth 2
        self.mix = nn.Linear(w, w, bias=False)
        self.mix_norm = nn.LayerNorm(w) if cfg.norm else nn.Identity()
        self.units = nn.ModuleList(
            nn.ModuleList([nn.Linear(4 * w, 2 * w, bias=cfg.bias), nn.Linear(2 * w, w, bias=cfg.bias),
                           nn.LayerNorm(w) if cfg.norm else nn.Identity()])
            for _ in range(cfg.depth)
        )

    @staticmethod
    def peers(h: torch.Tensor) -> torch.Tensor:
        """(B, H, W', C) -> (B, H, W', 4C): each cell's state and the means of the other cells of its row, column
        and box (zeros where the grid has no boxes)."""
        _, hh, ww, _ = h.shape
        row = (h.sum(2, keepdim=True) - h) / max(ww - 1, 1)
        col = (h.sum(1, keepdim=True) - h) / max(hh - 1, 1)
        b = math.isqrt(hh)
        if hh == ww and b * b == hh and b > 1:
            g = h.unflatten(1, (b, b)).unflatten(3, (b, b))  # (B, bi, i, bj, j, C)
            box = g.sum((2, 4), keepdim=True).expand_as(g).flatten(3, 4).flatten(1, 2)
            box = (box - h) / (hh - 1)
        else:
            box = torch.zeros_like(h)
        return torch.cat([h, row, col, box], dim=-1)

    def forward(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        act = self.act
        with precision.autocast_for(z):
            zl = z.permute(0, 2, 3, 1)  # (B, H, W', C): a view of the channels-last state
            el = precision.recalled(self, e, lambda t: t.permute(0, 2, 3, 1))
            h = act(self.mix_norm(self.mix(zl) + el))
            for c1, c2, n in self.units:
                h = act(n(h + c2(act(c1(self.peers(h))))))
            out = h.permute(0, 3, 1, 2)
        return precision.back(out, z)


def spatial(cfg: ModelConfig) -> tuple[int, int]:
    """(dims, kernel) of the per-position maps around a block (encoder, readout, an energy's embedding): the
    relational core maps each cell on its own (a 1 x 1 convolution); the others use the config's kernel."""
    if cfg.arch == "relational":
        return 2, 1
    return (2 if cfg.arch == "conv2d" else 1), cfg.kernel


def make_block(cfg: ModelConfig, smooth: bool = False) -> nn.Module:
    """The arch's block; smooth: twice-differentiable activations throughout (the transformer's GELU already is;
    convolutions switch ReLU for SiLU), for families that take gradients of the block at inference."""
    if cfg.arch == "transformer":
        return TransformerBlock(cfg, twice_differentiable=smooth)
    if cfg.arch == "relational":
        return RelationalBlock(cfg, act=F.silu if smooth else F.relu)
    return ConvBlock(cfg, dims=1 if cfg.arch == "conv1d" else 2, act=F.silu if smooth else F.relu)


class Encoder(nn.Module):
    """Task encoding (B, C_in, *spatial) -> injected input e (B, W, *spatial)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dims, k = spatial(cfg)
        self.conv = _conv(dims, cfg.in_channels, cfg.width, k, cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with precision.autocast_for(x):
            return precision.back(from_2d(conv(self.conv, as_2d(x)), x), x)


class Readout(nn.Module):
    """Latent (B, W, *spatial) -> logits (B, classes, *spatial): one prediction per output cell."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dims, k = spatial(cfg)
        half = max(cfg.width // 2, 2)
        self.c1 = _conv(dims, cfg.width, half, k, cfg.bias)
        self.c2 = _conv(dims, half, cfg.classes, k, cfg.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with precision.autocast_for(z):
            return precision.back(from_2d(conv(self.c2, F.relu(conv(self.c1, as_2d(z)))), z), z)


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Deterministic init from an explicit generator (no global RNG)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            with torch.no_grad():
                m.weight.uniform_(-bound * math.sqrt(3), bound * math.sqrt(3), generator=generator)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=generator)

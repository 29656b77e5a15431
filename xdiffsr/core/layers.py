"""Building blocks of the SongUNet (:mod:`xdiffsr.core.unet`) on latitude-longitude grids.

Fully connected and convolution layers with the EDM initialisation, group normalisation, noise
embeddings and the U-Net residual block with optional self-attention. Every spatial convolution
pads **circularly along longitude** (the last dim) and, along latitude, either with **zeros** or
**across the pole** (:func:`pad_poles`: the row ``k`` places beyond a pole is the row ``k`` places
inside it, half-way round in longitude). Pure torch.

References: see :mod:`xdiffsr.core.unet` (Song et al., 2021; Karras et al., 2022).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xdiffsr.errors import ArgumentError

__all__ = [
    "LAT_PADDINGS",
    "FourierEmbedding",
    "GroupNorm",
    "LatLonConv2d",
    "Linear",
    "PositionalEmbedding",
    "UNetBlock",
    "pad_poles",
]

#: Latitude padding of the convolutions: zeros, or the field continued across the pole.
LAT_PADDINGS = ("zeros", "pole")


def _xavier_uniform(shape: Sequence[int], fan_in: int, fan_out: int, gain: float) -> torch.Tensor:
    """Xavier-uniform initial values (Glorot & Bengio 2010) scaled by ``gain``."""
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return (torch.rand(*shape) * 2.0 - 1.0) * bound


class Linear(nn.Module):
    """Fully connected layer with Xavier-uniform init scaled by ``init_weight``.

    Maps ``(B, in_features)`` to ``(B, out_features)``.
    """

    def __init__(self, in_features: int, out_features: int, *, init_weight: float = 1.0) -> None:
        super().__init__()
        shape = (out_features, in_features)
        self.weight = nn.Parameter(_xavier_uniform(shape, in_features, out_features, init_weight))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class LatLonConv2d(nn.Module):
    """Convolution on a lat-lon grid: circular padding in longitude, zeros or poles in latitude.

    Optionally resamples first: ``down`` is 2x2 average pooling (EDM's ``[1, 1]`` filter) and
    ``up`` is nearest-neighbour doubling. ``kernel=0`` means resampling only (no weights).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input ``(B, in_channels, H, W)`` and output ``(B, out_channels, H', W')``
        with ``H' = H/2, 2H or H`` for down, up or neither (same for W).
    kernel : int
        Odd kernel size (1, 3, ...) or 0.
    down, up : bool
        Resample before the convolution.
    init_weight : float
        Scale of the Xavier-uniform initial weights (biases start at zero).
    lat_padding : {"zeros", "pole"}
        Rows beyond the first and last latitude: zeros, or the field continued across the pole
        (:func:`pad_poles`; the grid must be global with cell-centred rows and an even W).
    pole_sign : sequence of float, optional
        Per input channel, the factor applied to a value carried across a pole (-1 for the
        components of a vector in the local east/north frame, such as u and v); default all 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, down: bool = False,
                 up: bool = False, init_weight: float = 1.0, lat_padding: str = "zeros",
                 pole_sign: Sequence[float] | None = None) -> None:
        super().__init__()
        if kernel and kernel % 2 == 0:
            raise ArgumentError(f"kernel must be odd or 0, got {kernel}.")
        if up and down:
            raise ArgumentError("LatLonConv2d cannot both upsample and downsample.")
        self.in_channels, self.out_channels, self.kernel = in_channels, out_channels, kernel
        self.up, self.down = up, down
        if lat_padding not in LAT_PADDINGS:
            raise ArgumentError(f"lat_padding must be one of {LAT_PADDINGS}, got {lat_padding!r}.")
        self.lat_padding = lat_padding
        sign = None
        if pole_sign is not None:
            sign = torch.as_tensor(list(pole_sign), dtype=torch.float32)
            if sign.shape != (in_channels,) or not bool(((sign == 1) | (sign == -1)).all()):
                raise ArgumentError(f"pole_sign must hold {in_channels} values of +1 or -1, got "
                                    f"{list(pole_sign)!r}.")
        # Not persistent: it follows from the configuration, and model files stay unchanged.
        self.register_buffer("pole_sign", sign, persistent=False)
        if kernel:
            shape = (out_channels, in_channels, kernel, kernel)
            fan_in, fan_out = in_channels * kernel**2, out_channels * kernel**2
            self.weight = nn.Parameter(_xavier_uniform(shape, fan_in, fan_out, init_weight))
            self.bias = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = F.avg_pool2d(x, 2)
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.weight is None:
            return x
        p = self.kernel // 2
        if p and self.lat_padding == "pole":  # across the poles first, then wrap longitude
            sign = None if self.pole_sign is None else self.pole_sign.to(x.dtype)
            return F.conv2d(wrap_longitude(pad_poles(x, p, sign), p), self.weight, self.bias)
        if p:  # wrap longitude (last dim)
            x = wrap_longitude(x, p)
        return F.conv2d(x, self.weight, self.bias, padding=(p, 0))  # zeros in latitude


def pad_poles(x: torch.Tensor, p: int, sign: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` (B, C, H, W) extended by ``p`` rows beyond each pole: (B, C, H + 2p, W).

    On a global grid of cell-centred rows (no row on a pole), the point ``k`` rows beyond a pole
    is the point ``k - 1`` rows inside it on the opposite meridian: padding row ``-k`` is row
    ``k - 1`` and row ``H - 1 + k`` is row ``H - k``, each shifted by ``W / 2`` columns (180 deg
    of longitude). Components of a vector in the local east/north frame change sign on the way
    (``sign``, (C,) of +1/-1).

    Parameters
    ----------
    x : torch.Tensor
        Fields (B, C, H, W); W must be even.
    p : int
        Rows added on each side (``p <= H``).
    sign : torch.Tensor, optional
        (C,) factors for the carried rows (default 1).
    """
    w = x.shape[-1]
    if w % 2 or p > x.shape[-2]:
        raise ArgumentError(f"pad_poles needs an even number of longitudes and p <= H rows, got "
                            f"shape {tuple(x.shape)} and p={p}.")
    south = x[..., :p, :].flip(-2).roll(w // 2, dims=-1)
    north = x[..., -p:, :].flip(-2).roll(w // 2, dims=-1)
    if sign is not None:
        south, north = south * sign[:, None, None], north * sign[:, None, None]
    return torch.cat([south, x, north], dim=-2)


class _WrapLongitude(torch.autograd.Function):
    """Circular padding of the last dim by ``p`` with a one-copy backward.

    Autograd's own backward of ``cat([x[..., -p:], x, x[..., :p]])`` builds a zero tensor of
    ``x``'s size for each of the two halo slices and adds the three together (a quarter of the
    non-convolution time of a guided evaluation on the CPU); this one folds the halo gradients
    onto the edges in one copy. The backward is itself differentiable (out-of-place ops).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: int) -> torch.Tensor:
        ctx.p = p
        return torch.cat([x[..., -p:], x, x[..., :p]], dim=-1)  # keeps a channels-last layout

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        p = ctx.p
        mid = grad[..., p:-p]
        left = mid[..., :p] + grad[..., -p:]
        right = mid[..., -p:] + grad[..., :p]
        return torch.cat([left, mid[..., p:-p], right], dim=-1), None


def wrap_longitude(x: torch.Tensor, p: int) -> torch.Tensor:
    """``x`` (..., W) padded circularly by ``p`` columns on each side of the last dim."""
    if x.shape[-1] < 2 * p:  # narrower than both halos: plain indexing (autograd's backward)
        return torch.cat([x[..., -p:], x, x[..., :p]], dim=-1)
    return _WrapLongitude.apply(x, p)


def _same_layout(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``t`` in channels-last memory format if ``ref`` is (only) channels-last, else ``t``."""
    if ref.is_contiguous(memory_format=torch.channels_last) and not ref.is_contiguous():
        return t.contiguous(memory_format=torch.channels_last)
    return t


def _num_groups(num_channels: int, max_groups: int = 32, min_per_group: int = 4) -> int:
    """Largest divisor of ``num_channels`` not above ``min(max_groups, C // min_per_group)``."""
    g = max(1, min(max_groups, num_channels // min_per_group))
    while num_channels % g:
        g -= 1
    return g


class GroupNorm(nn.Module):
    """Group normalisation with up to 32 groups of at least 4 channels (as EDM).

    Maps ``(B, C, H, W)`` to the same shape; under autocast it runs in fp32.
    """

    def __init__(self, num_channels: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_groups = _num_groups(num_channels)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class PositionalEmbedding(nn.Module):
    """Transformer sinusoidal embedding of the noise level (DDPM++), ``(B,) -> (B, C)``.

    Features are ``[sin(x f_j), cos(x f_j)]`` with ``f_j = (1/max_positions)**(j/(C/2-1))``,
    ``j = 0..C/2-1`` (endpoint included), i.e. EDM's embedding after its sin/cos swap.

    References
    ----------
    .. [1] A. Vaswani et al., "Attention is all you need", NeurIPS 2017, Sec. 3.5.
    """

    def __init__(self, num_channels: int, *, max_positions: int = 10000) -> None:
        super().__init__()
        self.num_channels, self.max_positions = num_channels, max_positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        dtype = torch.promote_types(x.dtype, torch.float32)
        j = torch.arange(half, dtype=dtype, device=x.device) / (half - 1)
        freqs = (1.0 / self.max_positions) ** j
        arg = x.to(dtype)[:, None] * freqs[None, :]
        return torch.cat([arg.sin(), arg.cos()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of the noise level (NCSN++), ``(B,) -> (B, C)``.

    Features are ``[cos(2 pi x f_j), sin(2 pi x f_j)]`` with fixed ``f_j ~ N(0, scale**2)``.

    References
    ----------
    .. [1] M. Tancik et al., "Fourier features let networks learn high frequency functions in
       low dimensional domains", NeurIPS 2020.
    """

    def __init__(self, num_channels: int, *, scale: float = 16.0) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        arg = x.to(dtype)[:, None] * (2.0 * math.pi * self.freqs.to(dtype))
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class UNetBlock(nn.Module):
    """DDPM++ residual block with optional resampling and self-attention.

    ``x -> conv0(silu(norm0 x)) + affine(emb) -> silu(norm1) -> dropout -> conv1``, plus a
    (resampled, 1x1-projected) skip, scaled by ``sqrt(1/2)``; then, with attention,
    ``x -> (x + proj(attn(norm2 x))) * sqrt(1/2)``.

    Parameters
    ----------
    in_channels, out_channels, emb_channels : int
        Channels of ``x`` (B, in_channels, H, W), of the output and of ``emb`` (B, emb_channels).
    down, up : bool
        Halve or double H and W.
    attention : bool
        Add a self-attention layer over the H*W positions.
    num_heads : int
        Attention heads (must divide ``out_channels``).
    dropout : float
        Dropout probability before ``conv1`` (training mode only).
    eps : float
        Group-norm epsilon.
    lat_padding : {"zeros", "pole"}
        Latitude padding of the 3x3 convolutions (:class:`LatLonConv2d`).
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, *,
                 down: bool = False, up: bool = False, attention: bool = False,
                 num_heads: int = 1, dropout: float = 0.0, eps: float = 1e-6,
                 lat_padding: str = "zeros") -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.dropout = dropout
        self.skip_scale = math.sqrt(0.5)
        self.num_heads = num_heads if attention else 0
        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = LatLonConv2d(in_channels, out_channels, 3, down=down, up=up,
                                  lat_padding=lat_padding)
        self.affine = Linear(emb_channels, out_channels)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = LatLonConv2d(out_channels, out_channels, 3, init_weight=1e-5,
                                  lat_padding=lat_padding)
        self.skip = None
        if out_channels != in_channels or up or down:
            self.skip = LatLonConv2d(in_channels, out_channels, 1, down=down, up=up)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = LatLonConv2d(out_channels, 3 * out_channels, 1, init_weight=math.sqrt(0.2))
            self.proj = LatLonConv2d(out_channels, out_channels, 1, init_weight=1e-5)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb)[:, :, None, None].to(x.dtype)
        x = F.silu(self.norm1(x + params))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = (x + (self.skip(orig) if self.skip is not None else orig)) * self.skip_scale
        if self.num_heads:
            x = (self.proj(self.attend(self.norm2(x))) + x) * self.skip_scale
        return x

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention over the ``H*W`` positions of ``x`` (B, C, H, W).

        The ``qkv`` channels are laid out as ``(head, channel, {q, k, v})`` (the layout of
        EDM's ``UNetBlock``); scores are scaled by ``1/sqrt(C/heads)``.
        """
        b, c, h, w = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(b, heads, c // heads, 3, h * w)
        q, k, v = (t.transpose(-1, -2) for t in qkv.unbind(3))  # (B, heads, HW, C/heads)
        a = F.scaled_dot_product_attention(q, k, v)
        return _same_layout(a.transpose(-1, -2).reshape(b, c, h, w), x)

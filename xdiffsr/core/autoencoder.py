"""Autoencoder for latitude-longitude grids, and observation operators composed with a decoder.

The encoder maps a normalised state ``x`` of shape (B, C, H, W) to a latent ``z`` of shape
(B, C_z, H / f, W / f) with a downsampling factor ``f`` in {1, 2, 4}; the decoder maps it back.
Every convolution pads circularly in longitude (the last dim) and with zeros in latitude, so the
latent has no seam at the date line. With ``variational=True`` the encoder also returns a
log-variance and training adds a KL term (a VAE); otherwise the autoencoder is deterministic.

:class:`DecodedOperator` composes a pixel-space observation operator ``M`` with a decoder:
``(M o Dec)(z)``, the operator latent posterior sampling guides with (SLAMS, Qu et al. 2024).

References
----------
Qu, Y., Nathaniel, J., Li, S., Gentine, P. (2024). Deep generative data assimilation in
    multimodal setting (SLAMS: score-based latent assimilation). CVPR Workshops.
Rombach, R. et al. (2022). High-resolution image synthesis with latent diffusion models. CVPR.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArgumentError
from .layers import GroupNorm

__all__ = [
    "AutoencoderConfig",
    "DecodedOperator",
    "LatLonAutoencoder",
    "NormalisedDecoder",
    "kl_divergence",
]


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of a :class:`LatLonAutoencoder` (JSON round-trip with ``to_dict``).

    Parameters
    ----------
    in_channels : int
        Variables of the state ``C``.
    latent_channels : int
        Channels of the latent ``C_z``.
    img_resolution : tuple of int
        ``(H, W)`` of the state; both divisible by ``factor``.
    factor : int
        Downsampling factor 1, 2 or 4 (one 2x2 average pooling per factor of 2).
    channels : int
        Width of the hidden convolutions.
    blocks : int
        Residual blocks per resolution level (encoder and decoder alike).
    variational : bool
        Encoder returns (mean, log-variance) and training adds a KL term.
    """

    in_channels: int
    latent_channels: int
    img_resolution: tuple[int, int]
    factor: int = 2
    channels: int = 32
    blocks: int = 1
    variational: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_resolution", tuple(int(s) for s in self.img_resolution))
        if self.factor not in (1, 2, 4):
            raise ArgumentError(f"factor={self.factor!r} must be 1, 2 or 4.")
        H, W = self.img_resolution
        if H % self.factor or W % self.factor:
            raise ArgumentError(
                f"img_resolution={self.img_resolution} is not divisible by factor={self.factor}; "
                "pick a factor that divides both grid sizes (e.g. factor=2 for a 64 x 128 grid)."
            )
        for name in ("in_channels", "latent_channels", "channels"):
            if int(getattr(self, name)) < 1:
                raise ArgumentError(f"{name}={getattr(self, name)!r} must be >= 1.")
        if int(self.blocks) < 0:
            raise ArgumentError(f"blocks={self.blocks!r} must be >= 0.")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C_z, H / f, W / f)``."""
        H, W = self.img_resolution
        return (self.latent_channels, H // self.factor, W // self.factor)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["img_resolution"] = list(self.img_resolution)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AutoencoderConfig:
        return cls(**dict(data))


class _Conv(nn.Module):
    """3x3 (or 1x1) convolution, circular in longitude and zero-padded in latitude.

    Built on ``F.pad(mode="circular")`` so that forward- and double-backward-mode autograd work
    through it (the decoder's Jacobian-vector products of :class:`DecodedOperator`).
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=0)
        self.p = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p:
            x = F.pad(x, (self.p, self.p, 0, 0), mode="circular")
            x = F.pad(x, (0, 0, self.p, self.p))
        return self.conv(x)


class _ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.n1, self.c1 = GroupNorm(ch), _Conv(ch, ch)
        self.n2, self.c2 = GroupNorm(ch), _Conv(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        return x + self.c2(F.silu(self.n2(h)))


class LatLonAutoencoder(nn.Module):
    """Convolutional autoencoder on a lat/lon grid with circular longitude padding.

    Parameters
    ----------
    config : AutoencoderConfig
        Architecture.

    Notes
    -----
    ``encode(x)`` takes (B, C, H, W) and returns ``(mean, logvar)``, each (B, C_z, H/f, W/f)
    (``logvar`` is None for a deterministic autoencoder); ``decode(z)`` returns (B, C, H, W).
    The output convolution adds the input back through no skip: the latent is the only path.
    """

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        c, ch, cz = config.in_channels, config.channels, config.latent_channels
        n_down = {1: 0, 2: 1, 4: 2}[config.factor]
        enc: list[nn.Module] = [_Conv(c, ch)]
        for level in range(n_down + 1):
            enc += [_ResBlock(ch) for _ in range(config.blocks)]
            if level < n_down:
                enc.append(nn.AvgPool2d(2))
        enc += [GroupNorm(ch), nn.SiLU(), _Conv(ch, cz * (2 if config.variational else 1))]
        dec: list[nn.Module] = [_Conv(cz, ch)]
        for level in range(n_down + 1):
            dec += [_ResBlock(ch) for _ in range(config.blocks)]
            if level < n_down:
                dec += [nn.Upsample(scale_factor=2.0, mode="nearest"), _Conv(ch, ch)]
        dec += [GroupNorm(ch), nn.SiLU(), _Conv(ch, c)]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.config.latent_shape

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, C, H, W) -> ``(mean, logvar)`` of the latent; ``logvar`` None if deterministic."""
        _check_shape(x, (self.config.in_channels, *self.config.img_resolution), "x")
        h = self.encoder(x)
        if not self.config.variational:
            return h, None
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C_z, H/f, W/f) -> (B, C, H, W)."""
        _check_shape(z, self.latent_shape, "z")
        return self.decoder(z)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Reconstruction of ``x``, latent mean and log-variance (a sampled latent if
        variational and training; the mean otherwise)."""
        mean, logvar = self.encode(x)
        z = mean
        if logvar is not None and self.training:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device)
            z = mean + torch.exp(0.5 * logvar) * eps.to(mean.dtype)
        return self.decode(z), mean, logvar


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` per member, averaged over latent elements: (B,)."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).flatten(1).mean(dim=1)


def _check_shape(t: torch.Tensor, shape: Sequence[int], name: str) -> None:
    if t.ndim != 4 or tuple(t.shape[1:]) != tuple(shape):
        raise ArgumentError(
            f"{name} has shape {tuple(t.shape)}; expected (B, {', '.join(map(str, shape))})."
        )


class NormalisedDecoder(nn.Module):
    """Decoder acting on the *normalised* latent: ``x = Dec(center + scale * z)``.

    The diffusion prior of a latent model samples ``z = (latent - center) / scale``; this
    module turns such a sample into the normalised pixel state of the autoencoder.

    Parameters
    ----------
    decode : callable
        ``Dec``: latent (B, C_z, h, w) -> normalised state (B, C, H, W), differentiable.
    center, scale : tensor (C_z,)
        Latent normalisation per latent channel.
    """

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor], center, scale):
        super().__init__()
        self.decode = decode
        c = torch.as_tensor(center, dtype=torch.float32).reshape(1, -1, 1, 1)
        s = torch.as_tensor(scale, dtype=torch.float32).reshape(1, -1, 1, 1)
        self.register_buffer("center", c)
        self.register_buffer("scale", s)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(self.center + self.scale * z)


class DecodedOperator(nn.Module):
    """The observation operator of latent assimilation: ``z -> M(Dec(z))``.

    The forward pass is exact and differentiable (the paper's guidance back-propagates through
    ``M``, the decoder and the denoiser). For moment matching, which needs a *linear* operator,
    ``linear`` and ``adjoint`` are the Jacobian of ``M o Dec`` at the latent of the last forward
    call (the denoised latent ``D(z_t)`` of each member, a Gauss-Newton linearisation), or at
    zero before any forward call: ``linear(dz) = M_lin(J_Dec dz)`` and
    ``adjoint(v) = J_Dec^T M^T v`` with ``M_lin``, ``M^T`` the pixel operator's own ``linear``
    and ``adjoint``. For a linear decoder and a linear ``M`` this is exact.

    The decoder is linearised once per point: its graph at ``z0`` and the graph of
    ``g(u) = J_Dec^T u`` are built on the first product and reused by every later one, so
    each ``adjoint`` costs one backward pass through the decoder and each ``linear`` one
    backward pass through ``g`` (a ``J_Dec dz``), not a fresh forward as well. Several
    sources decoded by the same decoder share one linearisation when stacked with
    :func:`~xdiffsr.core.operators.stack_operators` (through :meth:`restack`).

    Parameters
    ----------
    operator : nn.Module
        Pixel-space operator with ``forward``, ``linear`` and ``adjoint`` (e.g.
        :class:`~xdiffsr.core.operators.SparseOperator`), on states (B, C, H, W).
    decoder : callable
        Differentiable ``Dec``: latent (B, C_z, h, w) -> state (B, C, H, W).
    latent_shape : tuple of int
        ``(C_z, h, w)``.
    """

    def __init__(self, operator: nn.Module, decoder: Callable, latent_shape: Sequence[int]):
        super().__init__()
        self.op = operator
        self.decoder = decoder
        self.state_shape = tuple(int(s) for s in latent_shape)
        self._z0: torch.Tensor | None = None
        #: (z0, z, u, g): the decoder's graph at z0 (z -> x) and that of g = J^T u
        self._lin: tuple | None = None
        #: decoder linearisations built (for tests and benchmarks)
        self.linearisations = 0

    @property
    def n_obs(self) -> int | None:
        """Number of observations of the pixel operator (None where it does not say)."""
        return getattr(self.op, "n_obs", None)

    def restack(self, operator: nn.Module) -> DecodedOperator:
        """The same decoder composed with another pixel operator (e.g. several sources
        stacked), sharing nothing but the decoder."""
        return DecodedOperator(operator, self.decoder, self.state_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``M(Dec(z))``: (B, C_z, h, w) -> (B, n); remembers ``z`` as linearisation point."""
        self._z0 = z.detach()
        self._lin = None
        return self.op(self.decoder(z))

    def _linearisation(self, batch: int, like: torch.Tensor) -> tuple:
        z0 = self._z0
        if z0 is None or z0.shape[0] != batch:
            z0 = self._z0 = torch.zeros(batch, *self.state_shape, dtype=like.dtype,
                                        device=like.device)
        if self._lin is None or self._lin[0] is not z0:
            with torch.enable_grad():
                z = z0.detach().requires_grad_(True)
                x = self.decoder(z)
                u = torch.zeros_like(x, requires_grad=True)
                (g,) = torch.autograd.grad(x, z, u, create_graph=True)
            self._lin = (z0, z, x, u, g)
            self.linearisations += 1
        return self._lin

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        """``J_Dec(z0)^T M^T v``: (B, n) -> (B, C_z, h, w)."""
        w = self.op.adjoint(v)
        _, z, x, _, _ = self._linearisation(v.shape[0], v)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(x, z, w.to(x.dtype), retain_graph=True)
        return g

    def linear(self, dz: torch.Tensor) -> torch.Tensor:
        """``M_lin(J_Dec(z0) dz)``: (B, C_z, h, w) -> (B, n), by a double vector-Jacobian
        product (works with any twice-differentiable decoder)."""
        _, _, _, u, g = self._linearisation(dz.shape[0], dz)
        with torch.enable_grad():
            (jdz,) = torch.autograd.grad(g, u, dz.detach().to(g.dtype), retain_graph=True)
        return self.op.linear(jdz)

    def extra_repr(self) -> str:
        return f"latent_shape={self.state_shape}"

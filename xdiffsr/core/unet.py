"""SongUNet (DDPM++) backbone for latitude-longitude grids.

A re-implementation of the DDPM++ U-Net of Song et al. (2021) in the form used by EDM
(Karras et al. 2022), adapted to global atmospheric fields:

* non-square grids ``img_resolution=(H, W)`` (latitude, longitude);
* every spatial convolution pads **circularly along longitude** (the last dim), so the network
  is equivariant to longitude shifts that are multiples of ``2**(levels-1)`` grid points, and
  along latitude either with **zeros** (``lat_padding="zeros"``) or **across the pole**
  (``"pole"``: the row beyond a pole is the row inside it, 180 deg of longitude away, with the
  wind components' signs flipped at the input), so polar rows see a neighbourhood instead of
  a wall of zeros;
* optionally a learned **latitude embedding** (``lat_embedding=True``): a bias per latitude row
  and channel added after the input convolution, zero at initialisation. The convolutions are
  equivariant along latitude except at the padded edges, so with padding across the poles the
  network has no other way to know its latitude;
* self-attention through :func:`torch.nn.functional.scaled_dot_product_attention`;
* no data-dependent Python control flow or host synchronisation in ``forward``, so the
  network can be compiled, captured in CUDA graphs and run under bf16 autocast;
* optional activation checkpointing (``checkpoint=True``).

The module is pure torch (no xarray). It holds the configuration (:class:`UNetConfig`) and the
assembly of the network (:class:`SongUNet`); the layers and blocks are in
:mod:`xdiffsr.core.layers` and re-exported here.

References
----------
.. [1] Y. Song, J. Sohl-Dickstein, D. P. Kingma, A. Kumar, S. Ermon, B. Poole, "Score-based
   generative modeling through stochastic differential equations", ICLR 2021.
.. [2] T. Karras, M. Aittala, T. Aila, S. Laine, "Elucidating the design space of
   diffusion-based generative models", NeurIPS 2022 (code: github.com/NVlabs/edm).
.. [3] A. Chakraborty et al., "Multimodal atmospheric super-resolution with deep generative
   models", 2025.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from xdiffsr.core.layers import (
    LAT_PADDINGS,
    FourierEmbedding,
    GroupNorm,
    LatLonConv2d,
    Linear,
    PositionalEmbedding,
    UNetBlock,
)
from xdiffsr.errors import ArgumentError

__all__ = ["SongUNet", "UNetConfig"]

_EMBEDDING_TYPES = ("positional", "fourier")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def _as_int_tuple(value: Any, name: str) -> tuple[int, ...]:
    """Return ``value`` as a tuple of Python ints or raise :class:`ArgumentError`."""
    if isinstance(value, int | str | bytes) or not isinstance(value, Sequence):
        raise ArgumentError(f"{name} must be a sequence of integers, got {value!r}.")
    out = tuple(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in out):
        raise ArgumentError(f"{name} must contain integers only, got {value!r}.")
    return out


def _check_positive_int(value: Any, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ArgumentError(f"{name} must be a positive integer, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Hyperparameters of :class:`SongUNet` (frozen, JSON-serialisable).

    Parameters
    ----------
    in_channels, out_channels : int
        Number of input and output channels (model variables).
    img_resolution : int or tuple of int
        Grid size ``(H, W)`` = (latitudes, longitudes); an int means ``(n, n)``. Both must be
        divisible by ``2**(len(channel_mult) - 1)``.
    model_channels : int, default 64
        Base channel count; level ``i`` has ``model_channels * channel_mult[i]`` channels.
    channel_mult : tuple of int, default (1, 2, 4, 8, 16)
        Per-level channel multipliers; their number is the number of resolution levels.
    channel_mult_emb : int, default 4
        Noise-embedding width is ``model_channels * channel_mult_emb``.
    channel_mult_noise : int, default 1
        Width of the Fourier/positional features is ``model_channels * channel_mult_noise``
        (1 for DDPM++, 2 for NCSN++).
    num_blocks : int, default 4
        Residual blocks per level in the encoder (the decoder has ``num_blocks + 1``).
    attn_levels : tuple of int, default (2, 3, 4)
        Indices of the levels (0 = finest) whose blocks use self-attention.
    dropout : float, default 0.1
        Dropout probability inside residual blocks (training mode only).
    embedding_type : {"positional", "fourier"}, default "positional"
        Noise-level embedding: transformer sinusoids (DDPM++) or random Fourier features.
    attn_head_channels : int or None, default None
        Channels per attention head; ``None`` uses one head per attention layer (as DDPM++).
        Must divide the channel count of every level that has attention.
    eps : float, default 1e-6
        Epsilon of the group normalisations.
    lat_padding : {"zeros", "pole"}, default "zeros"
        Latitude padding of every 3x3 convolution (:func:`xdiffsr.core.layers.pad_poles`).
        "pole" needs a global grid of cell-centred rows (checked where the grid is known) and
        ``W`` divisible by ``2**levels`` (an even width at every level).
    vector_channels : tuple of int, default ()
        Input channels that change sign across a pole (east/north wind components); only
        used with ``lat_padding="pole"``.
    lat_embedding : bool, default False
        Add a learned bias of shape ``(model_channels, H)`` (one per channel and latitude row,
        constant along longitude, so longitude equivariance is kept) to the input
        convolution's output. Zero at initialisation: a network given it starts as the same
        function as one without it (the way a fine-tuning adds it).

    References
    ----------
    .. [1] T. Karras et al., "Elucidating the design space of diffusion-based generative
       models", NeurIPS 2022, Appendix F.2 (DDPM++ configuration).
    """

    in_channels: int
    out_channels: int
    img_resolution: tuple[int, int]
    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4, 8, 16)
    channel_mult_emb: int = 4
    channel_mult_noise: int = 1
    num_blocks: int = 4
    attn_levels: tuple[int, ...] = (2, 3, 4)
    dropout: float = 0.1
    embedding_type: str = "positional"
    attn_head_channels: int | None = None
    eps: float = 1e-6
    lat_padding: str = "zeros"
    vector_channels: tuple[int, ...] = ()
    lat_embedding: bool = False

    def __post_init__(self) -> None:
        res = self.img_resolution
        if isinstance(res, int) and not isinstance(res, bool):
            res = (res, res)
        res = _as_int_tuple(res, "img_resolution")
        if len(res) != 2:
            raise ArgumentError(f"img_resolution must be (H, W), got {self.img_resolution!r}.")
        object.__setattr__(self, "img_resolution", res)
        object.__setattr__(self, "channel_mult", _as_int_tuple(self.channel_mult, "channel_mult"))
        object.__setattr__(self, "attn_levels", _as_int_tuple(self.attn_levels, "attn_levels"))
        for name in ("in_channels", "out_channels", "model_channels", "channel_mult_emb",
                     "channel_mult_noise", "num_blocks"):
            _check_positive_int(getattr(self, name), name)
        self._check_levels()
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            raise ArgumentError(f"dropout must be a float in [0, 1), got {self.dropout!r}.")
        object.__setattr__(self, "dropout", float(self.dropout))
        if self.embedding_type not in _EMBEDDING_TYPES:
            raise ArgumentError(
                f"embedding_type must be one of {_EMBEDDING_TYPES}, got {self.embedding_type!r}."
            )
        noise_channels = self.model_channels * self.channel_mult_noise
        if noise_channels < 4 or noise_channels % 2:
            raise ArgumentError(
                "model_channels * channel_mult_noise must be even and >= 4 (noise embedding), "
                f"got {noise_channels}; increase model_channels."
            )
        self._check_heads()
        if not isinstance(self.eps, int | float) or not self.eps > 0:
            raise ArgumentError(f"eps must be a positive float, got {self.eps!r}.")
        object.__setattr__(self, "eps", float(self.eps))
        self._check_padding()
        if not isinstance(self.lat_embedding, bool):
            raise ArgumentError(f"lat_embedding must be True or False, got {self.lat_embedding!r}.")

    def _check_padding(self) -> None:
        if self.lat_padding not in LAT_PADDINGS:
            raise ArgumentError(
                f"lat_padding must be one of {LAT_PADDINGS}, got {self.lat_padding!r}.")
        vec = _as_int_tuple(self.vector_channels, "vector_channels")
        bad = [c for c in vec if not 0 <= c < self.in_channels]
        if bad or len(set(vec)) != len(vec):
            raise ArgumentError(f"vector_channels {vec} must be distinct input channel indices "
                                f"in 0..{self.in_channels - 1}.")
        object.__setattr__(self, "vector_channels", tuple(sorted(vec)))
        w, levels = self.img_resolution[1], self.num_levels
        if self.lat_padding == "pole" and w % 2**levels:
            raise ArgumentError(
                f"lat_padding='pole' needs the number of longitudes ({w}) divisible by "
                f"2**levels = {2**levels} (180 deg of longitude is a whole number of columns at "
                "every level); use lat_padding='zeros' or another width.")

    def pole_sign(self) -> list[float] | None:
        """Per input channel, the factor of a value carried across a pole (None: all 1)."""
        if not self.vector_channels:
            return None
        return [-1.0 if c in self.vector_channels else 1.0 for c in range(self.in_channels)]

    def _check_levels(self) -> None:
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            raise ArgumentError(
                f"channel_mult must be a non-empty tuple of positive ints, got {self.channel_mult}."
            )
        n = len(self.channel_mult)
        bad = [lev for lev in self.attn_levels if not 0 <= lev < n]
        if bad:
            raise ArgumentError(
                f"attn_levels {self.attn_levels} contains {bad}, outside the {n} levels "
                f"0..{n - 1} defined by channel_mult={self.channel_mult}."
            )
        factor = 2 ** (n - 1)
        h, w = self.img_resolution
        if h < 1 or w < 1 or h % factor or w % factor:
            raise ArgumentError(
                f"img_resolution={self.img_resolution} must have H and W divisible by "
                f"2**(levels-1) = {factor} for {n} levels; pad or crop the grid to a multiple of "
                f"{factor}, or use fewer levels (shorter channel_mult)."
            )

    def _check_heads(self) -> None:
        hc = self.attn_head_channels
        if hc is None:
            return
        _check_positive_int(hc, "attn_head_channels")
        for lev in set(self.attn_levels) | {len(self.channel_mult) - 1}:
            ch = self.model_channels * self.channel_mult[lev]
            if ch % hc:
                raise ArgumentError(
                    f"attn_head_channels={hc} must divide the {ch} channels of attention level "
                    f"{lev}; choose a divisor of {ch} or None (one head)."
                )

    @property
    def num_levels(self) -> int:
        """Number of resolution levels, ``len(channel_mult)``."""
        return len(self.channel_mult)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (tuples become lists) accepted by :meth:`from_dict`."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UNetConfig:
        """Build a config from :meth:`to_dict` output (lists are accepted for tuples).

        Raises
        ------
        ArgumentError
            If ``data`` has unknown keys or lacks required ones.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ArgumentError(
                f"UNetConfig.from_dict got unknown keys {unknown}; valid keys are {sorted(names)}."
            )
        missing = sorted({"in_channels", "out_channels", "img_resolution"} - set(data))
        if missing:
            raise ArgumentError(f"UNetConfig.from_dict is missing required keys {missing}.")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    @classmethod
    def paper(cls, *, in_channels: int = 13, img_resolution: tuple[int, int] = (128, 256)
              ) -> UNetConfig:
        """Configuration of the prior network of Chakraborty et al. (2025).

        Base channels 64, multipliers (1, 2, 4, 8, 16), 4 blocks per level, attention at the
        three coarsest levels, dropout 0.1, 13 channels on a 128 x 256 grid (about 400 M
        parameters).
        """
        return cls(in_channels=in_channels, out_channels=in_channels,
                   img_resolution=img_resolution, model_channels=64,
                   channel_mult=(1, 2, 4, 8, 16), num_blocks=4, attn_levels=(2, 3, 4),
                   dropout=0.1)

    @classmethod
    def tiny(cls, in_channels: int = 1, img_resolution: int | tuple[int, int] = (16, 32)
             ) -> UNetConfig:
        """A ~76k-parameter configuration (3 levels, attention at the coarsest) for tests."""
        return cls(in_channels=in_channels, out_channels=in_channels,
                   img_resolution=img_resolution, model_channels=8, channel_mult=(1, 2, 2),
                   channel_mult_emb=2, num_blocks=1, attn_levels=(2,), dropout=0.0)



# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------


class SongUNet(nn.Module):
    """DDPM++ U-Net ``F(x, c_noise)`` on a latitude-longitude grid.

    Encoder: a 3x3 input convolution, then per level ``l`` (a downsampling block for ``l > 0``
    and) ``num_blocks`` residual blocks; decoder: two blocks at the coarsest level (the first
    with attention), then per level (an upsampling block for all but the coarsest and)
    ``num_blocks + 1`` blocks fed with concatenated encoder skips; output ``conv(silu(norm x))``.
    Attention is used in encoder blocks of ``attn_levels`` and in the last decoder block of
    each such level. All hyperparameters are keyword-only; see :class:`UNetConfig` for their
    meaning and defaults.

    Parameters
    ----------
    in_channels, out_channels, img_resolution, model_channels, channel_mult, channel_mult_emb,
    channel_mult_noise, num_blocks, attn_levels, dropout, embedding_type, attn_head_channels, eps,
    lat_padding, vector_channels, lat_embedding
        Architecture, as documented (with the same defaults) in :class:`UNetConfig`.
        ``img_resolution`` is ``(H, W)``, both divisible by ``2**(len(channel_mult)-1)``.
    checkpoint : bool, default False
        Recompute each block in the backward pass (activation checkpointing) to save memory
        while gradients are enabled. Not part of the architecture (not in :attr:`config`);
        ``forward(..., checkpoint=...)`` overrides it for one call.

    Attributes
    ----------
    config : UNetConfig
        The architecture, for saving and :meth:`from_config`.

    References
    ----------
    .. [1] Y. Song et al., "Score-based generative modeling through stochastic differential
       equations", ICLR 2021 (DDPM++).
    .. [2] T. Karras et al., "Elucidating the design space of diffusion-based generative
       models", NeurIPS 2022, Appendix F.2 and github.com/NVlabs/edm.

    Examples
    --------
    >>> net = SongUNet.from_config(UNetConfig.tiny(2, (16, 32)))
    >>> net(torch.zeros(3, 2, 16, 32), torch.zeros(3)).shape
    torch.Size([3, 2, 16, 32])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        img_resolution: int | tuple[int, int],
        model_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 4, 8, 16),
        channel_mult_emb: int = 4,
        channel_mult_noise: int = 1,
        num_blocks: int = 4,
        attn_levels: Sequence[int] = (2, 3, 4),
        dropout: float = 0.1,
        embedding_type: str = "positional",
        attn_head_channels: int | None = None,
        eps: float = 1e-6,
        lat_padding: str = "zeros",
        vector_channels: Sequence[int] = (),
        lat_embedding: bool = False,
        checkpoint: bool = False,
    ) -> None:
        args = locals()
        cfg = UNetConfig.from_dict({f.name: args[f.name] for f in dataclasses.fields(UNetConfig)})
        super().__init__()
        self.config = cfg
        self.checkpoint = bool(checkpoint)
        emb_ch = cfg.model_channels * cfg.channel_mult_emb
        noise_ch = cfg.model_channels * cfg.channel_mult_noise
        embed = PositionalEmbedding if cfg.embedding_type == "positional" else FourierEmbedding
        self.map_noise = embed(noise_ch)
        self.map_layer0 = Linear(noise_ch, emb_ch)
        self.map_layer1 = Linear(emb_ch, emb_ch)
        self._build(cfg, emb_ch)

    @classmethod
    def from_config(cls, config: UNetConfig, *, checkpoint: bool = False) -> SongUNet:
        """Build the network described by ``config`` (freshly initialised weights)."""
        if not isinstance(config, UNetConfig):
            raise ArgumentError(f"config must be a UNetConfig, got {type(config).__name__}.")
        return cls(**config.to_dict(), checkpoint=checkpoint)

    def _heads(self, cfg: UNetConfig, channels: int) -> int:
        return 1 if cfg.attn_head_channels is None else channels // cfg.attn_head_channels

    def _build(self, cfg: UNetConfig, emb_ch: int) -> None:
        kw = {"emb_channels": emb_ch, "dropout": cfg.dropout, "eps": cfg.eps,
              "lat_padding": cfg.lat_padding}
        h0, w0 = cfg.img_resolution
        last = cfg.num_levels - 1
        self.enc_in = LatLonConv2d(cfg.in_channels, cfg.model_channels, 3,
                                   lat_padding=cfg.lat_padding, pole_sign=cfg.pole_sign())
        if cfg.lat_embedding:  # one bias per channel and row, zero: starts as the same function
            self.lat_embed = nn.Parameter(torch.zeros(1, cfg.model_channels, h0, 1))
        self.enc = nn.ModuleDict()
        skips, cout = [cfg.model_channels], cfg.model_channels
        for lev, mult in enumerate(cfg.channel_mult):
            tag = f"{h0 >> lev}x{w0 >> lev}"
            if lev > 0:
                self.enc[f"{tag}_down"] = UNetBlock(cout, cout, down=True, **kw)
                skips.append(cout)
            for i in range(cfg.num_blocks):
                cin, cout = cout, cfg.model_channels * mult
                attn = lev in cfg.attn_levels
                self.enc[f"{tag}_block{i}"] = UNetBlock(
                    cin, cout, attention=attn, num_heads=self._heads(cfg, cout), **kw)
                skips.append(cout)
        self.dec = nn.ModuleDict()
        concat = []
        for lev in range(last, -1, -1):
            tag = f"{h0 >> lev}x{w0 >> lev}"
            if lev == last:
                self.dec[f"{tag}_in0"] = UNetBlock(
                    cout, cout, attention=True, num_heads=self._heads(cfg, cout), **kw)
                self.dec[f"{tag}_in1"] = UNetBlock(cout, cout, **kw)
            else:
                self.dec[f"{tag}_up"] = UNetBlock(cout, cout, up=True, **kw)
            concat += [False] * (2 if lev == last else 1)
            for i in range(cfg.num_blocks + 1):
                cin, cout = cout + skips.pop(), cfg.model_channels * cfg.channel_mult[lev]
                attn = i == cfg.num_blocks and lev in cfg.attn_levels
                self.dec[f"{tag}_block{i}"] = UNetBlock(
                    cin, cout, attention=attn, num_heads=self._heads(cfg, cout), **kw)
                concat.append(True)
        self._dec_concat = tuple(concat)
        self.out_norm = GroupNorm(cout, eps=cfg.eps)
        self.out_conv = LatLonConv2d(cout, cfg.out_channels, 3, init_weight=1e-5,
                                     lat_padding=cfg.lat_padding)

    def _block(self, block: UNetBlock, x: torch.Tensor, emb: torch.Tensor,
               checkpoint: bool) -> torch.Tensor:
        if checkpoint and torch.is_grad_enabled():
            return _checkpoint(block, x, emb, use_reentrant=False)
        return block(x, emb)

    def embed_noise(self, noise_labels: torch.Tensor, batch: int) -> torch.Tensor:
        """Noise-level embedding ``(B, emb_channels)`` from labels of shape ``()``/(1,)/(B,)."""
        emb = self.map_noise(noise_labels.reshape(-1).expand(batch))
        emb = emb.to(self.map_layer0.weight.dtype)  # features in >= fp32, then the net's dtype
        emb = F.silu(self.map_layer0(emb))
        return F.silu(self.map_layer1(emb))

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, *,
                checkpoint: bool | None = None) -> torch.Tensor:
        """Evaluate the network.

        Parameters
        ----------
        x : torch.Tensor
            Input of shape (B, in_channels, H, W).
        noise_labels : torch.Tensor
            Noise conditioning ``c_noise`` of shape (B,), (1,) or () (broadcast over the batch).
        checkpoint : bool, optional
            Activation checkpointing for this call only (default: the ``checkpoint``
            attribute), so a shared network can be checkpointed without being modified.

        Returns
        -------
        torch.Tensor
            Output of shape (B, out_channels, H, W), in the compute dtype (bf16 under autocast).
        """
        cfg = self.config
        expected = (cfg.in_channels, *cfg.img_resolution)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ArgumentError(
                f"x must have shape (B, {expected[0]}, {expected[1]}, {expected[2]}) for this "
                f"network, got {tuple(x.shape)}; regrid the input to img_resolution."
            )
        ckpt = self.checkpoint if checkpoint is None else bool(checkpoint)
        emb = self.embed_noise(noise_labels, x.shape[0])
        x = self.enc_in(x)
        if cfg.lat_embedding:
            x = x + self.lat_embed.to(x.dtype)
        skips = [x]
        for block in self.enc.values():
            x = self._block(block, x, emb, ckpt)
            skips.append(x)
        for block, cat in zip(self.dec.values(), self._dec_concat):
            if cat:
                x = torch.cat([x, skips.pop()], dim=1)
            x = self._block(block, x, emb, ckpt)
        return self.out_conv(F.silu(self.out_norm(x)))

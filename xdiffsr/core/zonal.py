"""Zonal truncation: the band limit of fields from a spectral model, applied to a denoiser.

A field of a spectral model truncated at total wavenumber ``N`` (triangular truncation, e.g.
T42) is a sum of spherical harmonics ``Y_n^m`` with ``|m| <= n <= N``. The associated Legendre
function ``P_n^m(sin lat)`` oscillates where ``cos(lat) > m / n`` and decays (evanescently)
poleward of that turning latitude, so at latitude ``lat`` such a field holds essentially no
zonal wavenumber above ``N cos(lat)``: near a pole only waves 0 and 1 survive. This is the
isotropic-resolution argument behind the polar Fourier filters of grid-point models.

On a regular latitude-longitude grid a learned denoiser is not told this: with zero padding at
the edges it puts grid-scale zonal variance into the rows next to the poles (measured on the
OSSE: 3-4x the truth's zonal standard deviation in the outermost row, almost all of it above
wavenumber 3, where the truth has none). :class:`ZonalFilter`, the sampler's ``project``
(:func:`xdiffsr.core.sampler.heun_sampler`), projects each denoised state onto the band-limited
fields, keeping per row the zonal wavenumbers

    m <= ceil(N cos(lat)) + 1

(one wavenumber of margin for the evanescent tail). Data that are band-limited pass unchanged,
so for them the optimal denoiser ``E[x0 | x]`` is a fixed point of the projection and only the
learned denoiser's error is removed. Torch and numpy only (no xarray); rows are latitudes in
degrees (any order), the last axis is a full circle of equally spaced longitudes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from xdiffsr.errors import ArgumentError

__all__ = ["ZonalFilter", "kept_wavenumbers", "truncate_zonal", "zonal_mask"]


def kept_wavenumbers(lat: Sequence[float] | np.ndarray, truncation: int) -> np.ndarray:
    """Highest zonal wavenumber kept in each row: ``ceil(N cos(lat)) + 1``.

    Parameters
    ----------
    lat : array_like
        Latitudes of the rows, degrees in [-90, 90].
    truncation : int
        Total wavenumber ``N`` of the fields' triangular truncation (> 0).

    Returns
    -------
    numpy.ndarray
        One integer per row.

    Examples
    --------
    >>> kept_wavenumbers([0.0, 60.0, 88.59375], 42).tolist()
    [43, 22, 3]
    """
    if isinstance(truncation, bool) or not isinstance(truncation, int | np.integer) \
            or truncation < 1:
        raise ArgumentError(f"zonal_truncation must be a positive integer (the total wavenumber "
                            f"of the fields' truncation, e.g. 42), got {truncation!r}.")
    lat = np.asarray(lat, dtype=float)
    if lat.ndim != 1 or not np.all(np.abs(lat) <= 90.0):
        raise ArgumentError(f"lat must be one row of latitudes in [-90, 90] degrees, got {lat!r}.")
    cos = np.clip(np.cos(np.deg2rad(lat)), 0.0, 1.0)
    return (np.ceil(int(truncation) * cos - 1e-9) + 1).astype(int)


def zonal_mask(lat: Sequence[float] | np.ndarray, nlon: int, truncation: int) -> torch.Tensor:
    """Real mask of shape (H, nlon // 2 + 1) over the rfft coefficients: 1 where kept."""
    kept = kept_wavenumbers(lat, truncation)
    m = np.arange(int(nlon) // 2 + 1)
    return torch.as_tensor((m[None, :] <= kept[:, None]).astype(np.float32))


def truncate_zonal(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` (..., H, W) with the zonal wavenumbers outside ``mask`` removed (in fp32 or wider,
    returned in ``x``'s dtype)."""
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    spec = torch.fft.rfft(work, dim=-1) * mask.to(device=x.device, dtype=work.dtype)
    return torch.fft.irfft(spec, n=x.shape[-1], dim=-1).to(x.dtype)


class ZonalFilter:
    """The projection ``x -> truncate_zonal(x, mask)`` for states on the rows ``lat``, with the
    mask built once per grid width and device (the sampler's ``project``).

    Parameters
    ----------
    lat : array_like
        The H latitudes (degrees).
    truncation : int
        Total wavenumber ``N`` of the triangular truncation the data have (T42: 42).

    Examples
    --------
    >>> import torch
    >>> project = ZonalFilter(torch.linspace(-87.5, 87.5, 8).numpy(), 4)
    >>> x = torch.cos(torch.arange(16.0) * 2 * torch.pi * 7 / 16).expand(1, 1, 8, 16)
    >>> float(project(x).abs().max()) < 1e-6  # wave 7 exceeds every row's limit
    True
    """

    def __init__(self, lat: Sequence[float] | np.ndarray, truncation: int) -> None:
        self.lat = np.asarray(lat, dtype=float)
        kept_wavenumbers(self.lat, truncation)  # checks both
        self.truncation = int(truncation)
        self._masks: dict[tuple[int, str], torch.Tensor] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] != self.lat.size:
            raise ArgumentError(f"the zonal truncation was built for {self.lat.size} latitude "
                                f"rows, got a state with {x.shape[-2]}.")
        key = (x.shape[-1], str(x.device))
        if key not in self._masks:
            self._masks[key] = zonal_mask(self.lat, x.shape[-1], self.truncation).to(x.device)
        return truncate_zonal(x, self._masks[key])

    def __repr__(self) -> str:
        return f"ZonalFilter(T{self.truncation}, {self.lat.size} rows)"

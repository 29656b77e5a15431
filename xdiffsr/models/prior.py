"""Priors: trained diffusion models and Gaussian priors, behind one interface.

A prior knows its variables (channels), units, grid and normalisation, and gives a denoiser
``D(x; sigma)`` on the normalised state ``x = (state - center) / scale`` of shape (B, C, H, W).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from xdiffsr.core.covariance import SpectralCovariance
from xdiffsr.core.gaussian import GaussianDenoiser, SpectralGaussianDenoiser
from xdiffsr.core.sampler import heun_sampler
from xdiffsr.core.schedule import karras_sigmas
from xdiffsr.core.zonal import ZonalFilter
from xdiffsr.errors import ArgumentError
from xdiffsr.grid import Grid, grid_of
from xdiffsr.models.spectral import SpectralFit, fit_spectral
from xdiffsr.names import check_flat, to_model_layout

#: The package's data folder: stored covariance estimates of the packaged models.
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
#: Version of the covariance estimate, part of its file name (bump when the estimator changes).
COVARIANCE_VERSION = 1


def covariance_folders() -> list[Path]:
    """Where :meth:`Prior.covariance` looks for a stored estimate of a loaded model: the
    package's data folder (the packaged models), then ``covariance/`` in the weights cache
    (``$XDIFFSR_CACHE``, else ``pooch.os_cache("xdiffsr")``), where new estimates go."""
    import pooch

    cache = os.environ.get("XDIFFSR_CACHE") or pooch.os_cache("xdiffsr")
    return [DATA_DIR, Path(cache) / "covariance"]


class Prior:
    """Common interface of the priors used by :func:`xdiffsr.super_resolve`.

    Attributes
    ----------
    variables : tuple of str
        Channel names, e.g. ``("t850", "z500", ...)``.
    units : dict
        Units of each variable (CF strings).
    grid : Grid
        The model grid (lat, lon as stored).
    center, scale : ndarray (C,)
        Normalisation: ``x = (state - center) / scale``.
    sigma_min, sigma_max : float
        Default noise range of the sampler.
    S_churn : float
        Default stochastic churn of the sampler (Karras et al. 2022, Algorithm 2) for this
        prior, used when the settings leave ``S_churn=None``: 0 (deterministic) unless a model
        file records the churn measured for it (``metadata["sampling"]["S_churn"]``).
    zonal_truncation : int or None
        Band limit of the prior's states, used when the settings leave
        ``zonal_truncation=None``: the total wavenumber ``N`` of the triangular truncation the
        training data have (the sampler's denoiser keeps zonal wavenumbers up to
        ``ceil(N cos(lat)) + 1`` per row, :mod:`xdiffsr.core.zonal`), or None (no
        truncation) unless a model file records it (``metadata["sampling"]
        ["zonal_truncation"]``).
    reference : ModelRef or None
        The file the prior was loaded from (:class:`xdiffsr.ModelRef`: sha256, path, registered
        name), set by :func:`xdiffsr.load_model`; None for an in-memory prior. Lazy tasks carry
        it instead of the weights.
    """

    name: str = "prior"
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    S_churn: float = 0.0
    zonal_truncation: int | None = None
    reference: Any = None

    def __init__(
        self,
        variables: Sequence[str],
        units: Mapping[str, str],
        grid: Grid,
        center,
        scale,
        attrs: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        self.variables = tuple(str(v) for v in variables)
        if len(set(self.variables)) != len(self.variables):
            raise ArgumentError(f"variables {self.variables} contain duplicates.")
        self.units = {v: str(units.get(v, "")) for v in self.variables}
        self.grid = grid
        self.center = np.asarray(center, dtype=np.float64).reshape(-1)
        self.scale = np.asarray(scale, dtype=np.float64).reshape(-1)
        if self.center.size != len(self.variables) or self.scale.size != len(self.variables):
            raise ArgumentError("center and scale need one value per variable.")
        if not (np.isfinite(self.scale).all() and (self.scale > 0).all()):
            raise ArgumentError(f"scale must be finite and > 0, got {self.scale}.")
        self.attrs = {v: dict((attrs or {}).get(v, {})) for v in self.variables}
        self._denoisers: dict[str, nn.Module] = {}
        self._covariance: SpectralCovariance | None = None
        self._covariance_given = False  # set_covariance: part of the fingerprint

    @property
    def state_shape(self) -> tuple[int, int, int]:
        return (len(self.variables), *self.grid.shape)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample of the diffusion (the state for a pixel prior, the latent for a
        :class:`~xdiffsr.models.latent.LatentDiffusionModel`)."""
        return self.state_shape

    def to_state(self, x: np.ndarray, device: torch.device | str | None = None) -> np.ndarray:
        """(…, *sample_shape) normalised samples -> (…, C, H, W) physical states.

        A pixel prior denormalises; a latent prior decodes first (on ``device``).
        """
        return self.denormalise(x)

    def wrap_operator(self, operator: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
        """The operator guidance uses for a pixel-space ``operator`` on the normalised state:
        itself for a pixel prior, ``operator o decoder`` for a latent prior."""
        return operator

    def denoiser(self, device: torch.device | str = "cpu") -> nn.Module:
        """The denoiser on ``device`` (built once per device and cached)."""
        key = str(torch.device(device))
        if key not in self._denoisers:
            self._denoisers[key] = self._build_denoiser().to(device).eval()
        return self._denoisers[key]

    def _build_denoiser(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def covariance(
        self, device: torch.device | str = "cpu", *, samples: int = 4, steps: int = 12
    ) -> SpectralCovariance:
        """Stationary covariance of the prior's normalised samples (Jacobian-free guidance).

        The first call draws ``samples`` unguided samples (``steps`` Heun steps, seed 0) of the
        prior itself and estimates an isotropic power spectrum from them
        (:meth:`SpectralCovariance.from_states`); the result is kept for later calls. A
        covariance given with :meth:`set_covariance` is used instead.

        For a model loaded from a file (:attr:`reference` set) the estimate depends only on
        the weights, so it is stored once, named by the model's :meth:`fingerprint`, and read
        back by every later process (:func:`covariance_folders`: shipped with the packaged
        models, else written to the weights cache; a cache that cannot be written is skipped).
        """
        if self._covariance is None:
            name = (f"covariance-{self.fingerprint()[:24]}-{int(samples)}x{int(steps)}"
                    f"-v{COVARIANCE_VERSION}.safetensors") if self.reference is not None else None
            self._covariance = _read_covariance(name) if name else None
            if self._covariance is None:
                self._covariance = self._estimate_covariance(device, samples, steps)
                if name:
                    _write_covariance(self._covariance, name)
        return self._covariance.to(device)

    def _estimate_covariance(self, device, samples: int, steps: int) -> SpectralCovariance:
        gen = torch.Generator(device=device).manual_seed(0)
        den = self.denoiser(device)
        project = (ZonalFilter(np.asarray(self.grid.lat), self.zonal_truncation)
                   if self.zonal_truncation else None)  # the states the sampler draws
        x = torch.randn(int(samples), *self.sample_shape, generator=gen, device=device)
        sig = karras_sigmas(int(steps), sigma_min=self.sigma_min, sigma_max=self.sigma_max)
        with torch.no_grad():
            x = heun_sampler(den, x, sig.to(device), generator=gen, project=project)
        # per variable: a cross-spectral (multivariate) estimate was slower and no better
        # on the OSSE (benchmarks/RESULTS.md, issue 15)
        return SpectralCovariance.from_states(x.cpu(), isotropic=True)

    def set_covariance(self, covariance: SpectralCovariance | None) -> None:
        """Use ``covariance`` (on the normalised samples, e.g. estimated from training states
        with :meth:`SpectralCovariance.from_states`) for Jacobian-free guidance; None: estimate
        it from the prior's samples again."""
        if covariance is not None and tuple(covariance.shape) != tuple(self.sample_shape):
            raise ArgumentError(
                f"covariance: shape {tuple(covariance.shape)} does not match the prior's "
                f"samples {tuple(self.sample_shape)}."
            )
        self._covariance = covariance
        self._covariance_given = covariance is not None

    def climate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per variable ``(low, high, scale)``: the range of typical values and the scale of
        variation about it, for the out-of-climate check of observations
        (:func:`xdiffsr.reconstruct.diagnostics.check_climate`: a value is out of climate
        beyond ``low - 6 scale`` or ``high + 6 scale``). A trained model's normalisation is its
        climatology over time and space: ``(center, center, scale)``."""
        return self.center, self.center, self.scale

    def normalisation(self) -> tuple[np.ndarray, np.ndarray]:
        """``(center, scale)`` as (C, H, W) fields: ``x = (state - center) / scale``."""
        shape = self.state_shape
        return (np.broadcast_to(self.center[:, None, None], shape),
                np.broadcast_to(self.scale[:, None, None], shape))

    def normalise(self, state: np.ndarray) -> np.ndarray:
        """(…, C, H, W) physical -> normalised."""
        return (state - self.center[:, None, None]) / self.scale[:, None, None]

    def denormalise(self, x: np.ndarray) -> np.ndarray:
        """(…, C, H, W) normalised -> physical."""
        return x * self.scale[:, None, None] + self.center[:, None, None]

    def describe(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def fingerprint(self) -> str:
        """sha256 of the prior's content: metadata, normalisation and weights or statistics.

        Independent of where the prior came from and of its device; the model identity in a
        zarr store's run record and in the keys of lazy tasks.
        """
        h = hashlib.sha256()
        for key, value in self._fingerprint_items():
            h.update(key.encode())
            _hash_value(h, value)
        return h.hexdigest()

    def _fingerprint_items(self) -> Iterable[tuple[str, Any]]:
        """(name, value) pairs of the content that :meth:`fingerprint` hashes (extended by the
        subclasses with their weights or statistics); a covariance given with
        :meth:`set_covariance` is content (an estimated one follows from the weights)."""
        given = [("covariance", self._covariance.power.numpy())] if self._covariance_given else []
        return [
            *given,
            ("type", type(self).__name__),
            ("name", self.name),
            ("variables", list(self.variables)),
            ("units", self.units),
            ("attrs", self.attrs),
            ("lat", self.grid.lat),
            ("lon", self.grid.lon),
            ("center", self.center),
            ("scale", self.scale),
            ("sigma", [float(self.sigma_min), float(self.sigma_max)]),
        ]

    def __repr__(self) -> str:
        H, W = self.grid.shape
        return (
            f"<{type(self).__name__} {self.name!r}: {len(self.variables)} variables "
            f"{list(self.variables)} on {H}x{W} lat/lon>"
        )


def _hash_value(h, value: Any) -> None:
    """Feed ``value`` to the hash ``h``: arrays and tensors by dtype, shape and bytes, anything
    else as sorted JSON."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(f"{value.dtype}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    else:
        h.update(json.dumps(value, sort_keys=True, default=str).encode())


def _stack_dataset(ds: xr.Dataset, variables: Sequence[str], grid: Grid) -> np.ndarray:
    """(…, C, H, W) array of ``variables`` from ``ds``, lat/lon last."""
    arrs = []
    for v in variables:
        da = ds[v]
        other = [d for d in da.dims if d not in (grid.lat_name, grid.lon_name)]
        arrs.append(da.transpose(*other, grid.lat_name, grid.lon_name).values)
    return np.stack(arrs, axis=-3)


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover
        return None


def _check_covariance_memory(n: int, available: int | None = None) -> None:
    """Refuse a full ``n x n`` covariance that cannot fit in memory (it and its eigenvectors,
    float64: about ``3 n^2 8`` bytes), with the fix (``rank=``)."""
    total = _physical_memory() if available is None else available
    need = 3 * 8 * n * n
    if total is not None and need > total:
        raise ArgumentError(
            f"GaussianPrior.fit without rank= needs a full covariance of {n} x {n} values "
            f"(variables x lat x lon), about {need / 2**30:.3g} GiB, more than this machine's "
            f"{total / 2**30:.3g} GiB; pass rank= (e.g. rank=64: the leading principal "
            "components plus a floor), or fit on a coarser grid."
        )


class GaussianPrior(Prior):
    """Gaussian prior ``N(mean, covariance)`` whose denoiser is exact.

    ``D(x; sigma) = mu + Sigma (Sigma + sigma^2 I)^{-1} (x - mu)`` in normalised units. It runs
    through
    the same sampler as a diffusion model, which makes it the analytic reference of the sampler and
    the classical optimal-interpolation baseline.

    Parameters
    ----------
    mean : xarray.Dataset
        One 2-D (lat, lon) field per variable on the model grid; its variables become the channels.
    covariance : array, shape (N, N)
        Covariance over the flattened state in (variable, lat, lon) C order, ``N = C*H*W``, in the
        variables' physical units; or a pair ``(eigvecs (N, r), eigvals (r,))``.
    floor : float
        Variance (in normalised units) on the complement of a low-rank covariance.
    name : str
        Label used in provenance attributes.
    """

    name = "gaussian"

    def __init__(self, mean: xr.Dataset, covariance, *, floor: float = 0.0, name: str = "gaussian"):
        check_flat(mean, argname="mean")
        grid = grid_of(mean, argname="mean")
        variables = [str(v) for v in mean.data_vars]
        mu = _stack_dataset(mean, variables, grid).astype(np.float64)
        if mu.ndim != 3:
            raise ArgumentError(
                f"mean must hold 2-D (lat, lon) fields, got shape {mu.shape}; select one time."
            )
        N = mu.size
        if isinstance(covariance, tuple):
            U, lam = (np.asarray(a, dtype=np.float64) for a in covariance)
            diag = (U**2) @ lam
        else:
            cov = np.asarray(covariance, dtype=np.float64)
            if cov.shape != (N, N):
                raise ArgumentError(
                    f"covariance must have shape (N, N) with N = variables*lat*lon = {N}, got "
                    f"{cov.shape}. Flatten in (variable, lat, lon) C order."
                )
            if not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-12 * np.abs(cov).max()):
                raise ArgumentError("covariance is not symmetric.")
            diag = np.diag(cov)
        C = len(variables)
        center = mu.reshape(C, -1).mean(axis=1)
        scale = np.sqrt(np.maximum(diag.reshape(C, -1).mean(axis=1), 1e-300))
        super().__init__(
            variables,
            {v: mean[v].attrs.get("units", "") for v in variables},
            grid,
            center,
            scale,
            {v: dict(mean[v].attrs) for v in variables},
        )
        s = np.repeat(self.scale, N // C)
        if isinstance(covariance, tuple):
            U = U / s[:, None]
            q, r = np.linalg.qr(U * np.sqrt(np.maximum(lam, 0)))  # re-orthonormalise
            lam, V = np.linalg.eigh(r @ r.T)
            U = q @ V
        else:
            lam, U = np.linalg.eigh(cov / np.outer(s, s))
        if lam.min() < -1e-6 * max(lam.max(), 1e-30):
            raise ArgumentError(
                f"covariance is not positive semi-definite (eigenvalue {lam.min():g})."
            )
        self._mean_n = self.normalise(mu)
        self._U, self._lam = U, np.clip(lam, 0, None)
        self.floor = float(floor)
        self.name = name

    def climate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(min, max)`` of the mean field per variable and the prior's mean standard
        deviation: a spatially varying mean (a temperature field from pole to equator) is
        the climate, however small the variance about it."""
        mu = self.denormalise(self._mean_n).reshape(len(self.variables), -1)
        return mu.min(axis=1), mu.max(axis=1), self.scale

    @classmethod
    def fit(
        cls,
        ds: xr.Dataset,
        *,
        rank: int | None = None,
        dim: str = "time",
        floor: float | None = None,
        name: str = "gaussian-fit",
        variables: Sequence[str] | None = None,
        covariance: str = "sample",
        **spectral: Any,
    ) -> GaussianPrior | SpectralGaussianPrior:
        """Fit mean and covariance to samples of ``ds`` along ``dim``.

        ``covariance="spectral"`` fits a prior that needs only a handful of fields: a smooth
        mean, a variance per latitude and correlations stationary in longitude from the fields'
        spectra (:class:`SpectralGaussianPrior`, :func:`xdiffsr.models.spectral.fit_spectral`,
        whose keywords ``mean``, ``multivariate``, ``resolved``, ``nan`` and ``window`` pass
        through ``spectral``; ``dim`` may then name several sample dimensions). The default
        ``"sample"`` is the sample covariance below.

        With ``rank`` the covariance is the leading ``rank`` principal components (by SVD of the
        normalised anomalies) plus ``floor`` times identity on the rest; by default ``floor`` is
        the mean residual variance, which keeps the prior proper. ``variables`` (model channel
        names such as ``["t850", "z500"]``) picks the channels from any layout of
        :mod:`xdiffsr.names` (WeatherBench 2 ``temperature`` with ``level``, cfgrib ``t`` with
        ``isobaricInhPa``, ...); without it ``ds`` must be flat (time, lat, lon) variables.

        Raises
        ------
        CoordinateError
            A variable with a level or other extra dimension (``number``) and no ``variables``.
        ArgumentError
            The full covariance (no ``rank``) would not fit in memory (use ``rank=``).
        """
        if covariance == "spectral":
            fit = fit_spectral(ds, dim=dim, variables=variables, **spectral)
            return SpectralGaussianPrior(fit, name=name)
        if covariance != "sample" or spectral:
            raise ArgumentError(
                f"covariance={covariance!r} with options {sorted(spectral)}: choose "
                "covariance='sample' (rank=, floor=) or 'spectral' (mean=, multivariate=, "
                "resolved=, nan=, window=)."
            )
        if variables is not None:
            ds = to_model_layout(ds, variables, argname="ds", keep=(dim,))
        else:
            check_flat(ds, argname="ds", keep=(dim,))
        grid = grid_of(ds, argname="ds")
        variables = [str(v) for v in ds.data_vars if dim in ds[v].dims]
        if not variables or ds.sizes.get(dim, 0) < 2:
            raise ArgumentError(
                f"ds needs variables with a '{dim}' dimension of length >= 2 to fit."
            )
        if rank is None:
            _check_covariance_memory(len(variables) * grid.lat.size * grid.lon.size)
        X = _stack_dataset(ds[variables], variables, grid).astype(np.float64)  # (T, C, H, W)
        T = X.shape[0]
        mu = X.mean(axis=0)
        A = (X - mu).reshape(T, -1) / np.sqrt(T - 1)
        mean_ds = ds[variables].isel({dim: 0}, drop=True).copy(data=None)
        for i, v in enumerate(variables):
            mean_ds[v] = mean_ds[v].copy(data=mu[i])
        if rank is None:
            return cls(mean_ds, A.T @ A, floor=floor or 0.0, name=name)
        # Low rank: principal components of the anomalies normalised per variable, so that one
        # variable's units do not claim every component.
        C = len(variables)
        scale = np.sqrt((A**2).reshape(T, C, -1).sum(axis=0).mean(axis=1))
        An = A / np.repeat(scale, A.shape[1] // C)
        _, S, Vt = np.linalg.svd(An, full_matrices=False)
        r = min(int(rank), Vt.shape[0])
        lam = S[:r] ** 2
        if floor is None:
            floor = float(max((An**2).sum() - lam.sum(), 0.0) / max(An.shape[1] - r, 1))
        obj = cls.__new__(cls)
        Prior.__init__(
            obj,
            variables,
            {v: ds[v].attrs.get("units", "") for v in variables},
            grid,
            mu.reshape(C, -1).mean(axis=1),
            scale,
            {v: dict(ds[v].attrs) for v in variables},
        )
        obj._mean_n, obj._U, obj._lam = obj.normalise(mu), Vt[:r].T, lam
        obj.floor, obj.name = float(floor), name
        return obj

    def _fingerprint_items(self) -> Iterable[tuple[str, Any]]:
        return [
            *super()._fingerprint_items(),
            ("mean", self._mean_n),
            ("eigvecs", self._U),
            ("eigvals", self._lam),
            ("floor", float(self.floor)),
        ]

    def _build_denoiser(self) -> nn.Module:
        return GaussianDenoiser(
            torch.as_tensor(self._mean_n, dtype=torch.float32),
            torch.as_tensor(self._U, dtype=torch.float32),
            torch.as_tensor(self._lam, dtype=torch.float32),
            floor=self.floor,
        )


class SpectralGaussianPrior(Prior):
    """Gaussian prior with a smooth mean and a covariance stationary in longitude.

    Normalised state ``x = (state - mean) / S`` with ``S`` a standard deviation per (variable,
    latitude); ``x ~ N(0, B)`` with ``B`` diagonal in the reflected Fourier basis
    (:class:`~xdiffsr.core.covariance.SpectralCovariance`). The denoiser is the exact filter
    ``B (B + sigma^2 I)^-1`` (:class:`~xdiffsr.core.gaussian.SpectralGaussianDenoiser`), and
    :meth:`covariance` is ``B`` itself, so moment-matching guidance (``"mmps"`` and ``"jf"``) is
    exact: the ensemble samples the optimal-interpolation posterior. Build it with
    :meth:`GaussianPrior.fit` ``(ds, covariance="spectral")``.

    Parameters
    ----------
    fit : SpectralFit
        The statistics (:func:`xdiffsr.models.spectral.fit_spectral`).
    name : str
        Label used in provenance attributes.
    """

    name = "gaussian-spectral"

    def __init__(self, fit: SpectralFit, *, name: str = "gaussian-spectral"):
        var = fit.scale**2 * fit.covariance.row_variance().double().numpy()[..., None]
        super().__init__(fit.variables, fit.units, fit.grid, fit.mean.mean(axis=(1, 2)),
                         np.sqrt(var.mean(axis=(1, 2))), fit.attrs)
        self.fit_stats, self.name = fit, name
        self._mean, self._scale = fit.mean, np.broadcast_to(fit.scale, fit.mean.shape)
        self._covariance = fit.covariance
        self._covariance_given = False

    def normalisation(self) -> tuple[np.ndarray, np.ndarray]:
        return self._mean, self._scale

    def normalise(self, state: np.ndarray) -> np.ndarray:
        return (state - self._mean) / self._scale

    def denormalise(self, x: np.ndarray) -> np.ndarray:
        return x * self._scale + self._mean

    def climate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Range of the mean field per variable and the prior's mean standard deviation."""
        mu = self._mean.reshape(len(self.variables), -1)
        return mu.min(axis=1), mu.max(axis=1), self.scale

    def covariance(self, device: torch.device | str = "cpu", **_: Any) -> SpectralCovariance:
        """``B``, the prior's own covariance of the normalised state (exact, not estimated)."""
        return self._covariance.to(device)

    def std(self) -> np.ndarray:
        """Prior standard deviation (C, H, W) in physical units."""
        row = self._covariance.row_variance().double().numpy()[..., None]
        return self._scale * np.sqrt(row)

    def _fingerprint_items(self) -> Iterable[tuple[str, Any]]:
        cov = self._covariance
        stats = [cov.power.numpy()] + ([cov.lam.numpy(), cov.vec.numpy()] if cov.vec is not None
                                       else [])
        return [*super()._fingerprint_items(), ("mean", self._mean), ("S", self._scale),
                *((f"spectrum{i}", a) for i, a in enumerate(stats))]

    def _build_denoiser(self) -> nn.Module:
        return SpectralGaussianDenoiser(torch.zeros(self.state_shape), self._covariance)


def _read_covariance(name: str) -> SpectralCovariance | None:
    """A stored estimate ``name`` from the first of :func:`covariance_folders` holding it."""
    from safetensors.torch import load_file

    for folder in covariance_folders():
        path = folder / name
        if path.is_file():
            return SpectralCovariance(load_file(path)["power"])
    return None


def _write_covariance(cov: SpectralCovariance, name: str) -> None:
    """Store an estimate in the cache (atomically; skipped where it cannot be written)."""
    from safetensors.torch import save_file

    folder = covariance_folders()[-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        save_file({"power": cov.power.detach().cpu().contiguous()}, tmp)
        os.replace(tmp, folder / name)
    except OSError:
        pass

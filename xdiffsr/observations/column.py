"""Column (satellite-like) observations: radiances as weighted vertical means of temperature.

A channel ``c`` observes a brightness-temperature-like value

``y_c = int K_c(s) T(s) ds / int K_c(s) ds``,   ``s = ln p``, integrated over the model's column

(from its lowest to its highest pressure level), where ``K_c`` is the channel's weighting
function and ``T(s)`` the temperature profile, taken linear in ``ln p`` between the model's
levels (the piecewise-linear interpolant of ``t850, t500, t250``; no extrapolation above the top
or below the bottom level). With the hat functions ``phi_l`` of that interpolant, the operator is
a matrix ``W`` (channels x levels), ``W[c, l] = int K_c phi_l ds / int K_c ds``: every row sums to
1 and a profile linear in ``ln p`` is integrated exactly. The integrals are computed with
32-point Gauss-Legendre quadrature on each layer (exact to rounding for smooth kernels).

Weighting functions (:class:`WeightingFunctions`):

- :meth:`WeightingFunctions.gaussian`: ``K_c(s) = exp(-(s - ln p_c)^2 / (2 w^2))``, Gaussian
  in ``ln p`` peaking at ``p_c`` hPa with width ``w`` (in ``ln p``); the default
  (:data:`DEFAULT_PEAKS`) has three channels peaking at 800, 500 and 300 hPa, like the
  tropospheric temperature-sounding channels of a microwave sounder;
- :meth:`WeightingFunctions.from_callables`: any kernels ``K_c(p_hPa)``;
- :meth:`WeightingFunctions.from_array`: the matrix ``W`` itself (channels x the model's
  levels), used as given.

Observations are tidy DataFrames with columns ``time, lat, lon, channel, value[, error]``
(``value`` in K, ``error`` a standard deviation in K); :func:`xdiffsr.osse.satellite.
simulate_radiances` simulates them along satellite swaths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import pandas as pd
import scipy.sparse as sp

from xdiffsr.errors import ArgumentError, ObservationError
from xdiffsr.names import parse_channel
from xdiffsr.observations.sources import ObsBlock, Observations
from xdiffsr.observations.validate import numeric_column, time_column
from xdiffsr.regrid import point_weights

__all__ = [
    "DEFAULT_CHANNEL_ERROR_STD",
    "DEFAULT_PEAKS",
    "ColumnObservations",
    "WeightingFunctions",
    "column_levels",
]

#: Peak pressures (hPa) of the default channels.
DEFAULT_PEAKS: dict[str, float] = {"ch1": 800.0, "ch2": 500.0, "ch3": 300.0}
#: Default width of the Gaussian weighting functions, in ln p.
DEFAULT_WIDTH = 0.4
#: Default error standard deviation of a channel (K).
DEFAULT_CHANNEL_ERROR_STD = 0.5
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(32)


def column_levels(variables: Sequence[str], quantity: str = "t") -> tuple[list[int], np.ndarray]:
    """Indices of the model's ``quantity`` channels (temperature by default) and their pressures
    (hPa), sorted by decreasing pressure (surface to top).

    Raises
    ------
    ArgumentError
        Fewer than two such levels (a column needs at least two).
    """
    found = []
    for i, v in enumerate(variables):
        q, level = parse_channel(v)
        if q == quantity and level is not None:
            found.append((float(level), i))
    if len(found) < 2:
        raise ArgumentError(
            f"a column operator needs >= 2 pressure levels of {quantity!r} among the model's "
            f"variables {list(variables)}; use a model with e.g. t850, t500 and t250."
        )
    found.sort(reverse=True)
    return [i for _, i in found], np.array([p for p, _ in found])


def _hat_integrals(kernel: Callable[[np.ndarray], np.ndarray], s: np.ndarray) -> np.ndarray:
    """``int K(s) phi_l(s) ds`` for the hat functions ``phi_l`` on the nodes ``s`` (ascending)."""
    out = np.zeros(s.size)
    for j in range(s.size - 1):
        a, b = s[j], s[j + 1]
        x = 0.5 * (b - a) * _NODES + 0.5 * (a + b)
        k = np.asarray(kernel(x), dtype=np.float64) * 0.5 * (b - a) * _WEIGHTS
        t = (x - a) / (b - a)
        out[j] += (k * (1 - t)).sum()
        out[j + 1] += (k * t).sum()
    return out


def _gaussian_kernel(p: np.ndarray, p0: float, width: float) -> np.ndarray:
    """``exp(-(ln p - ln p0)^2 / (2 width^2))``."""
    return np.exp(-0.5 * ((np.log(p) - np.log(p0)) / width) ** 2)


@dataclass(frozen=True)
class WeightingFunctions:
    """Per-channel vertical weighting functions of a column operator.

    Build with :meth:`gaussian`, :meth:`from_callables` or :meth:`from_array`; :meth:`matrix`
    gives the operator's weights on a model's levels.

    Attributes
    ----------
    channels : tuple of str
        Channel names (the ``channel`` column of the observations).
    kernels : tuple of callables, optional
        ``K_c(p)`` with ``p`` in hPa (array in, array out).
    weights : ndarray (channels, levels), optional
        The matrix given by the user, for the levels ``levels``.
    levels : ndarray, optional
        Pressures (hPa) of the columns of ``weights``.
    """

    channels: tuple[str, ...]
    kernels: tuple[Callable, ...] | None = None
    weights: np.ndarray | None = field(default=None, compare=False)
    levels: np.ndarray | None = field(default=None, compare=False)

    @classmethod
    def gaussian(cls, peaks: Mapping[str, float] | None = None, *,
                 width: float = DEFAULT_WIDTH) -> WeightingFunctions:
        """Gaussian kernels in ``ln p`` peaking at ``peaks`` (channel -> hPa), width ``width``."""
        peaks = dict(DEFAULT_PEAKS if peaks is None else peaks)
        if not (np.isfinite(width) and width > 0):
            raise ArgumentError(f"width={width!r} must be > 0 (a width in ln p, e.g. 0.4).")
        if not peaks or any(not (np.isfinite(p) and p > 0) for p in peaks.values()):
            raise ArgumentError(f"peaks={peaks!r} must map channel names to pressures > 0 hPa.")

        # partials of a module-level function, not lambdas: the sources pickle (dask workers)
        kernels = tuple(partial(_gaussian_kernel, p0=float(p0), width=float(width))
                        for p0 in peaks.values())
        return cls(tuple(map(str, peaks)), kernels)

    @classmethod
    def from_callables(cls, kernels: Mapping[str, Callable]) -> WeightingFunctions:
        """User kernels ``{channel: K(p_hPa)}`` (vectorised over a numpy array)."""
        if not kernels or not all(callable(k) for k in kernels.values()):
            raise ArgumentError("kernels must map channel names to callables K(p_hPa).")
        return cls(tuple(map(str, kernels)), tuple(kernels.values()))

    @classmethod
    def from_array(cls, weights, channels: Sequence[str], levels: Sequence[float]
                   ) -> WeightingFunctions:
        """The operator's matrix itself: ``weights`` (channels x levels) on ``levels`` (hPa)."""
        w = np.asarray(weights, dtype=np.float64)
        lev = np.asarray(levels, dtype=np.float64).reshape(-1)
        if w.shape != (len(channels), lev.size) or not np.isfinite(w).all():
            raise ArgumentError(
                f"weights has shape {w.shape}; give a finite array (channels x levels) = "
                f"({len(channels)}, {lev.size})."
            )
        return cls(tuple(map(str, channels)), None, w, lev)

    def matrix(self, levels: Sequence[float]) -> np.ndarray:
        """Weights ``W`` (channels x levels) on the model's ``levels`` (hPa, any order)."""
        lev = np.asarray(levels, dtype=np.float64)
        if self.weights is not None:
            order = [int(np.flatnonzero(np.isclose(self.levels, p))[0]) if np.isclose(
                self.levels, p).any() else -1 for p in lev]
            if -1 in order or lev.size != self.levels.size:
                raise ArgumentError(
                    f"the weighting matrix is given on levels {self.levels.tolist()} hPa but the "
                    f"model has {lev.tolist()}; give weights on exactly the model's levels."
                )
            return self.weights[:, order]
        s = np.log(lev)
        order = np.argsort(s)
        out = np.empty((len(self.channels), lev.size))
        for c, k in enumerate(self.kernels):
            hat = _hat_integrals(lambda x, k=k: k(np.exp(x)), s[order])
            total = hat.sum()
            if not (np.isfinite(total) and total > 0):
                raise ArgumentError(
                    f"the weighting function of channel {self.channels[c]!r} integrates to "
                    f"{total:g} over the model's column {lev.min():g}-{lev.max():g} hPa; it "
                    "must be positive there (move its peak inside the column)."
                )
            out[c, order] = hat / total
        return out


def _frame(df: pd.DataFrame, channels: Sequence[str]) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise ArgumentError(f"ColumnObservations needs a DataFrame, got {type(df).__name__}.")
    missing = {"time", "lat", "lon", "channel", "value"} - set(df.columns)
    if missing:
        raise ObservationError(
            f"column observations lack columns {sorted(missing)} (have {list(df.columns)}); "
            "give a tidy DataFrame with time, lat, lon, channel, value[, error]."
        )
    out = df.copy()
    out["time"] = time_column(out)
    for col in ("lat", "lon", "value") + (("error",) if "error" in out else ()):
        out[col] = numeric_column(out, col)
    if (np.abs(out["lat"].to_numpy()) > 90).any():
        raise ObservationError(
            "column observations column 'lat' holds values outside [-90, 90]; give latitudes "
            "in degrees_north (swapped lat and lon columns?)."
        )
    unknown = sorted(set(out["channel"].astype(str)) - set(channels))
    if unknown:
        raise ObservationError(
            f"channels {unknown} have no weighting function (known: {list(channels)}); pass "
            "weighting=WeightingFunctions... covering them."
        )
    out["channel"] = out["channel"].astype(str)
    bad = ~np.isfinite(out["value"].to_numpy()) | out["time"].isna().to_numpy()
    if "error" in out:
        bad |= ~(out["error"].to_numpy() > 0)
    return out.loc[~bad].reset_index(drop=True)


@dataclass
class ColumnObservations(Observations):
    """Satellite-like column observations through :class:`WeightingFunctions`.

    ``data`` is a tidy DataFrame ``time, lat, lon, channel, value[, error]``; rows without a
    finite value (or with an error <= 0) are dropped. The error variance is ``error**2`` if
    given, else ``sigma_y`` (a variance, one value or a dict by channel), else
    :data:`DEFAULT_CHANNEL_ERROR_STD` squared. Horizontal interpolation to the footprints is
    ``method`` ('bilinear' default, or 'bicubic') as for point observations. ``Gamma`` is scaled
    by the prior variance of the level where a channel's weight is largest. The default time
    tolerance is ±1 h.

    Parameters
    ----------
    weighting : WeightingFunctions, optional
        Default :meth:`WeightingFunctions.gaussian` (channels ch1, ch2, ch3).
    quantity : str
        The model quantity the columns integrate (``"t"``: temperature levels).
    """

    weighting: WeightingFunctions | None = None
    quantity: str = "t"
    kind = "column"

    def __post_init__(self):
        if self.weighting is None:
            self.weighting = WeightingFunctions.gaussian()
        if not isinstance(self.weighting, WeightingFunctions):
            raise ArgumentError(
                f"weighting={self.weighting!r} is not a WeightingFunctions; build one with "
                "WeightingFunctions.gaussian(...), from_callables(...) or from_array(...)."
            )
        self._check_options("1h")
        self.data = _frame(self.data, self.weighting.channels)

    def describe(self) -> str:
        return self.name or f"column({len(self.data)} obs, {len(self.weighting.channels)} ch)"

    def window(self, start, stop) -> ColumnObservations:
        t = self.data["time"].to_numpy()
        tol = self._tol.to_timedelta64()
        keep = (t >= start - tol) & (t <= stop + tol)
        return replace(self, data=self.data.loc[keep].reset_index(drop=True))

    key_column = "channel"

    def variance_for(self, channel: str, n: int) -> np.ndarray:
        """Error variances of ``n`` observations of ``channel``: ``sigma_y`` (one value, or by
        channel), else :data:`DEFAULT_CHANNEL_ERROR_STD` squared."""
        s = self.sigma_y
        if isinstance(s, Mapping):
            s = s.get(channel)
        return np.full(n, DEFAULT_CHANNEL_ERROR_STD**2 if s is None else float(s))

    def error_keys(self, prior) -> list[str]:
        """The channels: ``sigma_y`` is keyed by channel."""
        return list(self.weighting.channels)

    def key_variable(self, key: str, prior) -> str:
        """The model variable of the level where the channel's weight is largest (the variable
        calibration groups its observations by)."""
        idx, levels = column_levels(prior.variables, self.quantity)
        row = self.weighting.matrix(levels)[self.weighting.channels.index(key)]
        return prior.variables[idx[int(np.argmax(row))]]

    def _variance(self, rows: pd.DataFrame) -> np.ndarray:
        if "error" in rows:
            return rows["error"].to_numpy(dtype=np.float64) ** 2
        return np.concatenate([self.variance_for(c, 1) for c in rows["channel"]] or [[]])

    def matrix(self, rows: pd.DataFrame, prior) -> tuple[sp.csr_matrix, np.ndarray]:
        """Sparse operator (n, C*H*W) on the physical state for ``rows``, and the model variable
        index of each row's heaviest level."""
        idx, levels = column_levels(prior.variables, self.quantity)
        W = self.weighting.matrix(levels)  # (channels, levels)
        ch = {c: k for k, c in enumerate(self.weighting.channels)}
        rows_w = W[[ch[c] for c in rows["channel"]]]  # (n, levels)
        grid = prior.grid
        P = point_weights(grid.lat, grid.lon, rows["lat"].to_numpy(), rows["lon"].to_numpy(),
                          self.method or "bilinear")
        HW = grid.lat.size * grid.lon.size
        blocks = [sp.csr_matrix((len(rows), HW)) for _ in prior.variables]
        for j, i in enumerate(idx):
            blocks[i] = sp.diags(rows_w[:, j]) @ P
        var_index = np.asarray(idx)[np.argmax(rows_w, axis=1)]
        return sp.hstack(blocks).tocsr(), var_index

    def _block_at(self, t, prior) -> ObsBlock | None:
        d = self.data
        near = np.abs(d["time"].to_numpy() - t) <= self._tol.to_timedelta64()
        if not near.any():
            return None
        rows = d.loc[near]
        A, var_index = self.matrix(rows, prior)
        y = rows["value"].to_numpy(np.float64).copy()
        return ObsBlock(A, y, self._variance(rows), var_index)

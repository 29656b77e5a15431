"""The observation-source contract: :class:`ObsBlock` (one source at one time) and the base class
:class:`Observations`, which owns what every source shares: option and tolerance validation,
error scaling (:meth:`Observations.scaled`, used by calibration) and dask tokenization from all
of its fields (``__dask_tokenize__``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from xdiffsr.errors import ArgumentError
from xdiffsr.observations.error_model import default_error_std
from xdiffsr.observations.validate import check_options

__all__ = ["ObsBlock", "Observations"]


@dataclass
class ObsBlock:
    """Observations of one source at one target time, in the model's physical units.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix, shape (n, C*H*W)
    y : ndarray (n,)
    variance : ndarray (n,)
        Observation-error variance ``Sigma_y``.
    var_index : ndarray of int (n,) or None
        Index of the model variable of each observation (None for callable operators).
    gamma : ndarray (n,), optional
        Per-observation ``Gamma`` (dimensionless; absolute for a callable ``operator``).
        :meth:`Observations.at_time` always fills it.
    operator : callable, optional
        Instead of ``matrix``: a differentiable ``f(state) -> (B, n)`` on the physical state
        tensor (B, C, H, W).
    """

    matrix: sp.csr_matrix | None
    y: np.ndarray
    variance: np.ndarray
    var_index: np.ndarray | None
    gamma: np.ndarray | None = None
    operator: Any = None

    @property
    def n_obs(self) -> int:
        return int(self.y.size)


@dataclass
class Observations:
    """Base class of observation sources.

    Parameters
    ----------
    data
        The observations (DataFrame or Dataset, see subclasses).
    sigma_y : float, dict or None
        Observation-error variance ``Sigma_y`` (squared units), one value or a dict by model
        variable. None: the ``error`` column (standard deviation) if present, else
        :data:`DEFAULT_ERROR_STD` squared.
    gamma : float
        ``Gamma`` of Eq. 13, dimensionless: the likelihood variance is ``Sigma_y + sigma^2 Gamma
        scale_v^2`` with ``scale_v`` the prior's normalisation scale of the observed variable.
    weight : float or None
        Weight of this source in Eq. 14; overridden by ``super_resolve(weights=...)``.
    method : str or None
        Interpolation: points 'bilinear' (default) or 'bicubic'; grids 'conservative' (default),
        'bilinear' or 'bicubic'.
    tolerance : str or Timedelta or None
        Observations within ``± tolerance`` of a target time are used at that time.
    name : str or None
        Label in provenance attributes.
    units : str, dict or None
        Units of the observed values (one CF string, or a dict by variable), for data that do
        not state them (no ``units`` column or attribute).
    assume_units : bool
        Take values without stated units to be in the model's units. Off by default: a source
        without units is refused (:class:`~xdiffsr.errors.UnitsError`), since a field in degC
        taken as K is silently wrong.
    """

    data: Any
    sigma_y: float | Mapping[str, float] | None = None
    gamma: float = 1.0
    weight: float | None = None
    method: str | None = None
    tolerance: str | pd.Timedelta | None = None
    name: str | None = None
    units: str | Mapping[str, str] | None = None
    assume_units: bool = False
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    kind = "observations"

    def variance_for(self, variable: str, n: int) -> np.ndarray:
        s = self.sigma_y
        if isinstance(s, Mapping):
            if variable in s:
                return np.full(n, float(s[variable]))
            s = None
        if s is not None:
            return np.full(n, float(s))
        return np.full(n, default_error_std(variable) ** 2)

    #: the data column holding the key of each row's error variance (``error_keys``)
    key_column = "variable"

    def _check_options(self, default_tolerance: str) -> None:
        """The checks every source's constructor runs: the common options
        (:func:`~xdiffsr.observations.validate.check_options`) and the time tolerance (parsed
        into ``self._tol``, ``default_tolerance`` when None)."""
        check_options(self)
        self._tol = _tolerance(self.tolerance, default_tolerance)

    def error_keys(self, prior) -> list[str] | None:
        """The keys ``sigma_y`` may hold for this source (the model variables; None: one
        variance for every observation)."""
        return list(prior.variables)

    def key_variable(self, key: str, prior) -> str:
        """The model variable whose error factor applies to the observations of ``key``."""
        return key

    def scaled(self, factor: float | Mapping[str, float], prior) -> Observations:
        """A copy with every error variance multiplied by ``factor``.

        ``factor`` is one number, or a ``{model variable: factor}`` mapping (variables not in it
        keep their variances). An ``error`` column in use (``sigma_y`` None) is multiplied by
        ``sqrt(factor)`` row by row; otherwise ``sigma_y`` becomes a dict over
        :meth:`error_keys` of the variances the source used (:meth:`variance_for`) times the
        factor of each key's model variable (:meth:`key_variable`); a source with one variance
        (``error_keys`` None) takes one number only.
        """
        f_of = _factor_of(factor)
        data, col = self.data, self.key_column
        if self.sigma_y is None and isinstance(data, pd.DataFrame) and "error" in data:
            keys = data[col].astype(str) if col in data else pd.Series("", index=data.index)
            f = {k: f_of(self.key_variable(k, prior)) for k in keys.unique()}
            return replace(self, data=data.assign(error=data["error"] * np.sqrt(
                keys.map(f).to_numpy(float))))
        keys = self.error_keys(prior)
        if keys is None:
            if isinstance(factor, Mapping):
                raise ArgumentError(
                    f"factor: {self.describe()} has one error variance; give one number, not "
                    "a dict."
                )
            return replace(self, sigma_y=float(self.sigma_y) * float(factor))
        return replace(self, sigma_y={
            k: float(self.variance_for(k, 1)[0]) * f_of(self.key_variable(k, prior))
            for k in keys})

    def describe(self) -> str:  # pragma: no cover - overridden
        return self.kind

    def at_time(self, t: np.datetime64, prior) -> ObsBlock | None:
        """The observations usable at ``t`` as one block (None: none within the tolerance),
        with ``Gamma`` always filled (the source's ``gamma`` where the block has no
        per-observation values). Subclasses build the block in :meth:`_block_at`."""
        block = self._block_at(t, prior)
        if block is None or block.gamma is not None:
            return block
        return replace(block, gamma=np.full(block.n_obs, float(self.gamma)))

    def _block_at(self, t: np.datetime64, prior) -> ObsBlock | None:  # pragma: no cover
        raise NotImplementedError

    def window(self, start: np.datetime64, stop: np.datetime64) -> Observations:
        """The source restricted to observations usable between ``start`` and ``stop``."""
        return self

    def __dask_tokenize__(self) -> tuple:
        """Dask's token of the source: its type and every field (data, errors, operator,
        super-observation options, weighting, ...), so that sources differing in anything
        never share a dask key."""
        return (type(self).__module__, type(self).__qualname__,
                *((f.name, _token_value(getattr(self, f.name)))
                  for f in fields(self) if f.compare))


def _token_value(value: Any) -> Any:
    """Dask's normalised token of one field; a DataFrame by its content (dask's own token of
    frames with string columns differs between equal copies)."""
    from dask.base import normalize_token

    if isinstance(value, pd.DataFrame):
        return ("DataFrame", list(map(str, value.columns)), list(map(str, value.dtypes)),
                pd.util.hash_pandas_object(value, index=True).to_numpy())
    return normalize_token(value)


def _tolerance(tol, default: str) -> pd.Timedelta:
    try:
        value = pd.Timedelta(default if tol is None else tol)
    except (TypeError, ValueError, OverflowError) as err:
        raise ArgumentError(
            f"tolerance={tol!r} is not a time span ({err}); give e.g. '3h', '30min' or a "
            "pandas.Timedelta."
        ) from err
    if pd.isna(value) or value < pd.Timedelta(0):
        raise ArgumentError(f"tolerance={tol!r} must be a time span >= 0, e.g. '3h'.")
    return value


def _factor_of(factor: float | Mapping[str, float]) -> Callable[[str], float]:
    """``variable -> factor`` (1 for variables a mapping leaves out); refuses factors that are
    not finite and > 0."""
    per_var = dict(factor) if isinstance(factor, Mapping) else None
    for f in (per_var.values() if per_var is not None else [factor]):
        try:
            ok = np.isfinite(float(f)) and float(f) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ArgumentError(f"factor={factor!r}: every factor must be finite and > 0.")
    if per_var is None:
        return lambda v: float(factor)
    return lambda v: float(per_var.get(v, 1.0))

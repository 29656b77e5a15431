"""What the experiments share: the model argument, name checks, score rows, number format.

Used by the OSSE suite (:mod:`~xdiffsr.evaluation.suite`), the sequential experiment
(:mod:`~xdiffsr.evaluation.sequential`) and the demo (:mod:`~xdiffsr.evaluation.demo`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError, CoordinateError
from xdiffsr.evaluation.metrics import crps_ensemble, errors_at_points, rmse, spread_skill_ratio
from xdiffsr.grid import find_latlon
from xdiffsr.models import Prior, load_model

__all__ = [
    "METRICS",
    "check_members",
    "check_names",
    "format_number",
    "markdown_row",
    "model_variables",
    "on_grid",
    "resolve_model",
    "score_rows",
]

METRICS = ("rmse", "crps", "spread_skill", "rmse_observed", "rmse_unobserved")


def resolve_model(model: Any) -> Prior:
    """``model`` itself when it is a prior, else :func:`xdiffsr.models.load_model` of it."""
    return model if isinstance(model, Prior) else load_model(model)


def model_variables(prior: Prior, truth: xr.Dataset) -> list[str]:
    """The prior's variables present in ``truth`` (an ArgumentError when there are none)."""
    variables = [v for v in prior.variables if v in truth.data_vars]
    if not variables:
        raise ArgumentError(
            f"truth: none of the model variables {list(prior.variables)} is in the truth "
            f"({list(truth.data_vars)}); pass a truth with the model's variables or another model"
        )
    return variables


def check_names(values: str | Sequence[str], allowed: Sequence[str], name: str) -> list[str]:
    """``values`` as a list, each one of ``allowed`` (an ArgumentError naming ``name`` if not)."""
    values = [values] if isinstance(values, str) else list(values)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ArgumentError(f"{name}: unknown {unknown}; choose from {list(allowed)}")
    return values


def check_members(members: int) -> None:
    """The CRPS and the spread need an ensemble of at least 2 members."""
    if int(members) < 2:
        raise ArgumentError(
            f"members={members!r}: the CRPS and spread need at least 2 members; pass members >= 2"
        )


def format_number(x: float) -> str:
    """Three significant digits for the Markdown tables; empty for NaN or inf."""
    return "" if not np.isfinite(x) else f"{x:.3g}"


def markdown_row(label: str, values) -> str:
    """One row ``| label | v1 | v2 |`` of a Markdown table, numbers as :func:`format_number`."""
    return f"| {label} | " + " | ".join(format_number(x) for x in values) + " |"


def on_grid(data: xr.Dataset, truth: xr.Dataset, name: str = "train") -> xr.Dataset:
    """``data`` labelled with the truth's latitudes and longitudes, which it must equal to rounding.

    Raises
    ------
    CoordinateError
        The latitudes or longitudes differ (regrid ``data`` to the truth grid first).
    """
    mine = find_latlon(data, name)
    theirs = find_latlon(truth, "truth")
    for c, ref, key in zip(mine, theirs, ("latitude", "longitude")):
        a, b = np.asarray(c, float), np.asarray(ref, float)
        if a.shape != b.shape or not np.allclose(a, b, atol=1e-6):
            raise CoordinateError(
                f"{name}: its {key} coordinate differs from the truth's ({a.size} vs {b.size} "
                f"points); regrid the {'training data' if name == 'train' else name} to the "
                "truth grid"
            )
    return data.assign_coords(
        {c.name: (c.dims[0], ref.values, ref.attrs) for c, ref in zip(mine, theirs)}
    )


def score_rows(
    ens: xr.Dataset, truth: xr.Dataset, variables: Sequence[str], stations: pd.DataFrame
) -> list[dict[str, Any]]:
    """Rows ``{variable, units, metric, value}`` of :data:`METRICS` over (time, lat, lon).

    ``ens`` is an ensemble (with ``member``) or a deterministic reconstruction on the grid and
    times of ``truth``; ``stations`` (lat, lon) split the grid into observed and unobserved cells.
    """
    lat, lon = find_latlon(truth, "truth")
    dims = ("time", lat.dims[0], lon.dims[0])
    ref = truth
    truth = truth[list(variables)]
    ens = ens[list(variables)]
    scores = {"rmse": rmse(ens, truth, dims=dims)}
    if "member" in ens.dims:
        scores["crps"] = crps_ensemble(ens, truth, dims=dims)
        scores["spread_skill"] = spread_skill_ratio(ens, truth, dims=dims)
    else:  # deterministic: the CRPS of a point forecast is its mean absolute error
        scores["crps"] = crps_ensemble(ens.expand_dims(member=1), truth, dims=dims, fair=False)
    at = errors_at_points(ens, truth, stations, dims=dims)
    scores["rmse_observed"] = at.sel(location="observed", drop=True)
    scores["rmse_unobserved"] = at.sel(location="unobserved", drop=True)
    return [
        {
            "variable": v,
            "units": ref[v].attrs.get("units", ""),
            "metric": m,
            "value": float(s[v]),
        }
        for m, s in scores.items()
        for v in variables
    ]

"""Observation sources, the vertical (sounding to model level) operator, the default observation
errors (one table, :mod:`xdiffsr.observations.error_model`) and likelihoods."""

from xdiffsr.observations.column import ColumnObservations, WeightingFunctions
from xdiffsr.observations.earth2studio import (
    EARTH2STUDIO_COLUMNS,
    from_earth2studio,
    is_earth2studio_frame,
)
from xdiffsr.observations.error_model import DEFAULT_ERROR_STD, DEFAULT_ERRORS, default_error_std
from xdiffsr.observations.sources import (
    CallableObservations,
    GridObservations,
    ObsBlock,
    Observations,
    PointObservations,
    as_source,
)
from xdiffsr.observations.vertical import (
    match_times,
    parse_model_variable,
    soundings_to_observations,
)

__all__ = [
    "DEFAULT_ERRORS",
    "DEFAULT_ERROR_STD",
    "EARTH2STUDIO_COLUMNS",
    "CallableObservations",
    "ColumnObservations",
    "GridObservations",
    "ObsBlock",
    "Observations",
    "PointObservations",
    "WeightingFunctions",
    "as_source",
    "default_error_std",
    "from_earth2studio",
    "is_earth2studio_frame",
    "match_times",
    "parse_model_variable",
    "soundings_to_observations",
]

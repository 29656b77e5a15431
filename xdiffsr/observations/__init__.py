"""Observation sources, the vertical (sounding to model level) operator, and likelihoods."""

from xdiffsr.observations.sources import (
    DEFAULT_ERROR_STD,
    CallableObservations,
    GridObservations,
    ObsBlock,
    Observations,
    PointObservations,
    as_source,
)
from xdiffsr.observations.vertical import (
    DEFAULT_ERRORS,
    match_times,
    parse_model_variable,
    soundings_to_observations,
)

__all__ = [
    "DEFAULT_ERRORS",
    "DEFAULT_ERROR_STD",
    "CallableObservations",
    "GridObservations",
    "ObsBlock",
    "Observations",
    "PointObservations",
    "as_source",
    "match_times",
    "parse_model_variable",
    "soundings_to_observations",
]

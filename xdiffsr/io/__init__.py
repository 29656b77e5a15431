"""Readers and writers: IGRA v2 radiosondes (:mod:`xdiffsr.io.igra`)."""

from .igra import (
    DEFAULT_ERRORS,
    match_times,
    parse_model_variable,
    read_igra,
    read_igra_derived,
    read_station_list,
    soundings_to_observations,
    write_igra,
)

__all__ = [
    "DEFAULT_ERRORS",
    "match_times",
    "parse_model_variable",
    "read_igra",
    "read_igra_derived",
    "read_station_list",
    "soundings_to_observations",
    "write_igra",
]

"""File formats: IGRA v2 radiosonde readers and writer (:mod:`xdiffsr.io.igra`)."""

from xdiffsr.io.igra import read_igra, read_igra_derived, read_station_list, write_igra

__all__ = ["read_igra", "read_igra_derived", "read_station_list", "write_igra"]

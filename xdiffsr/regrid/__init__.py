"""Regridding and point-interpolation weights as sparse observation operators.

Weights are :class:`scipy.sparse.csr_matrix` objects ``W`` with ``y = W @ x`` where ``x`` is a
field on a rectilinear lat/lon grid flattened in C order over (lat, lon), with the coordinates in
the order they were given. Built-in methods (numpy/scipy): first-order conservative (exact
spherical overlap areas), bilinear and bicubic (Keys cubic convolution). xESMF builds conservative
and bilinear weights instead when it imports (``backend="auto"``), and weight files in the
xESMF/ESMF netCDF layout are read and written without it. See ``docs/regridding.md``.
"""

from xdiffsr.grid import find_latlon
from xdiffsr.regrid._axes import grid_bounds
from xdiffsr.regrid._io import read_weights, write_weights
from xdiffsr.regrid._regridder import Regridder
from xdiffsr.regrid._weights import cell_areas, point_weights, regrid_weights

__all__ = [
    "Regridder",
    "cell_areas",
    "find_latlon",
    "grid_bounds",
    "point_weights",
    "read_weights",
    "regrid_weights",
    "write_weights",
]

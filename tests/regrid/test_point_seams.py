"""Point operators at the seams (issue 27): a point exactly on the first or last grid longitude,
on 0, 360, -180 and 180 degrees, exactly on a grid latitude, and at +-90 gives the value the
interpolation weights imply: the node's own value on a node, the 1-D interpolation along the row
or column it lies on elsewhere. (A peer's bug: a point exactly on the first grid coordinate got
index -1 and wrapped to the far edge.)"""

from __future__ import annotations

import numpy as np
import pytest

from xdiffsr.regrid import point_weights

METHODS = ["bilinear", "bicubic"]

#: Global grids in the conventions the package reads: (lat, lon).
GRIDS = {
    "0..357 descending lat with poles": (np.linspace(90, -90, 61), np.arange(0, 360, 3.0)),
    "-180..177 ascending": (np.linspace(-90, 90, 61), np.arange(-180, 180, 3.0)),
    "cell centres 0.5..359.5": (np.arange(-88.5, 90, 3.0), np.arange(1.5, 360, 3.0)),
    "-178.5..178.5 descending": (np.arange(88.5, -90, -3.0), np.arange(-178.5, 180, 3.0)),
}


#: Regional grids: one across Greenwich, one across the dateline (no wrap: the first and last
#: longitudes are the edges).
REGIONAL = {
    "across Greenwich": (np.arange(30.0, 61, 1.5), np.arange(-20.0, 20.1, 2.0) % 360),
    "across the dateline": (np.arange(-10.0, 10.1, 2.0), np.arange(170.0, 200.1, 2.5) - 360 * (
        np.arange(170.0, 200.1, 2.5) > 180)),
}


def _field(lat, lon):
    rng = np.random.default_rng(0)
    return rng.normal(size=(lat.size, lon.size))


def _at(lat, lon, plat, plon, method):
    P = point_weights(lat, lon, np.atleast_1d(plat), np.atleast_1d(plon), method)
    f = _field(lat, lon)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    return P @ f.ravel(), P, f


def _node(lat, lon, i, j):
    return _field(lat, lon)[i, j]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(GRIDS) + list(REGIONAL))
def test_first_and_last_grid_longitude_give_their_node(name, method):
    lat, lon = {**GRIDS, **REGIONAL}[name]
    i = lat.size // 3
    for j in (0, lon.size - 1):
        v, P, _ = _at(lat, lon, lat[i], lon[j], method)
        np.testing.assert_allclose(v, _node(lat, lon, i, j), atol=1e-12)
        assert P.nnz == 1  # weight 1 on the node itself, nothing from the far edge
        # the same longitude in the other convention (and +-360) is the same point
        for shift in (-360.0, 360.0):
            w, _, _ = _at(lat, lon, lat[i], lon[j] + shift, method)
            np.testing.assert_allclose(w, v, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("plon", [0.0, 360.0, -180.0, 180.0])
def test_zero_360_and_dateline(name, method, plon):
    """0 and 360 are one point, -180 and 180 another; on a grid node they give the node, between
    nodes (a cell-centre grid) the 1-D interpolation across the seam along the row."""
    lat, lon = GRIDS[name]
    i = 7
    v, _, f = _at(lat, lon, lat[i], plon, method)
    on = np.isclose(np.mod(lon - plon, 360.0), 0.0) | np.isclose(np.mod(lon - plon, 360), 360)
    if on.any():
        np.testing.assert_allclose(v, f[i, np.flatnonzero(on)[0]], atol=1e-12)
    else:  # half-way between the two nodes that straddle the seam
        d = np.mod(lon - plon + 180.0, 360.0) - 180.0  # signed distance, (-180, 180]
        west, east = np.argmax(np.where(d < 0, d, -np.inf)), np.argmin(np.where(d > 0, d, np.inf))
        assert np.isclose(-d[west], d[east])
        if method == "bilinear":
            np.testing.assert_allclose(v, 0.5 * (f[i, west] + f[i, east]), atol=1e-12)
        else:  # Keys at t = 1/2: (-1, 9, 9, -1) / 16 over the four nodes around
            n = lon.size
            ww, ee = (west - 1) % n, (east + 1) % n
            ref = (9 * (f[i, west] + f[i, east]) - f[i, ww] - f[i, ee]) / 16
            np.testing.assert_allclose(v, ref, atol=1e-12)
    # the other name of the same longitude gives the same value
    twin = {0.0: 360.0, 360.0: 0.0, -180.0: 180.0, 180.0: -180.0}[plon]
    w, _, _ = _at(lat, lon, lat[i], twin, method)
    np.testing.assert_allclose(w, v, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(GRIDS))
def test_exactly_on_a_grid_latitude_interpolates_along_the_row(name, method):
    lat, lon = GRIDS[name]
    f = _field(lat, lon)
    for i in (0, 5, lat.size - 1):  # first, inner and last latitude
        j = 11
        plon = lon[j] + 0.25 * (lon[j + 1] - lon[j])
        v, P, _ = _at(lat, lon, lat[i], plon, method)
        rows = {c // lon.size for c in P.indices}
        assert rows == {i}, f"latitude {lat[i]}: weights on rows {rows}"
        if method == "bilinear":
            np.testing.assert_allclose(v, 0.75 * f[i, j] + 0.25 * f[i, j + 1], atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("plat", [90.0, -90.0])
def test_poles(name, method, plat):
    """At a pole: the pole row where the grid has one (every longitude the same point: any
    longitude gives a value of that row), else the outermost row, constant extrapolation."""
    lat, lon = GRIDS[name]
    f = _field(lat, lon)
    i = int(np.argmin(np.abs(lat - plat)))
    for j in (0, 17, lon.size - 1):
        v, P, _ = _at(lat, lon, plat, lon[j], method)
        assert {c // lon.size for c in P.indices} == {i}
        np.testing.assert_allclose(v, f[i, j], atol=1e-12)

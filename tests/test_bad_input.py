"""Bad input through the public API: every call returns finite, well-formed output or raises a
subclass of :class:`xdiffsr.errors.XDiffSRError` naming the argument (never another exception
type, never NaN from finite input), and nothing is silently accepted.

Targeted tests first (each names the argument the error must name), then property tests driving
``super_resolve``, the observation constructors, ``read_igra`` and ``load_model`` with generated
malformed input.
"""

from __future__ import annotations

import gzip
import io
import math
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xdiffsr
from tests.conftest import TINY_LAT, TINY_LON, smooth_covariance, tiny_model, tiny_observations
from xdiffsr.errors import ArgumentError, ModelError, ObservationError, XDiffSRError, XDiffSRWarning
from xdiffsr.io.igra import read_igra
from xdiffsr.reconstruct import plan as plan_module
from xdiffsr.reconstruct.plan import make_plan
from xdiffsr.reconstruct.sample import member_seed, member_seeds

TIMES = pd.DatetimeIndex(["2020-01-01T00"])
DS = xr.Dataset(coords={"time": TIMES})
FAST = {"members": 2, "steps": 4}
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _prior() -> xdiffsr.GaussianPrior:
    coords = {
        "lat": ("lat", TINY_LAT, {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": ("lon", TINY_LON, {"units": "degrees_east", "standard_name": "longitude"}),
    }
    mean = xr.Dataset(
        {
            "t850": (("lat", "lon"), np.full((8, 16), 270.0), {"units": "K"}),
            "z500": (("lat", "lon"), np.full((8, 16), 54000.0), {"units": "m2 s-2"}),
        },
        coords=coords,
    )
    K = smooth_covariance(8, 16, length=2.0, nugget=1e-2, periodic=True)
    return xdiffsr.GaussianPrior(mean, np.kron(np.diag([25.0, 400.0**2]), K))


PRIOR = _prior()


def _points() -> pd.DataFrame:
    return tiny_observations(TIMES)[0]


def _coarse() -> xr.Dataset:
    return tiny_observations(TIMES)[1]


def _run(obs, **kw) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XDiffSRWarning)
        return xdiffsr.super_resolve(DS, obs, model=PRIOR, **{**FAST, **kw})


def _assert_finite(out: xr.Dataset) -> None:
    assert {"t850", "z500"} <= set(out.data_vars)
    for v in ("t850", "z500"):
        assert out[v].dims == ("time", "member", "lat", "lon")
        assert np.isfinite(out[v].values).all(), f"{v} has non-finite members"


# ------------------------------------------------------------------------------------------
# point observations: text in numeric columns, None, positions
@pytest.mark.parametrize("col", ["value", "lat", "lon", "error", "gamma"])
def test_text_in_numeric_column(col):
    df = _points()
    if col not in df:
        df[col] = 1.0
    df[col] = df[col].astype(object)
    df.loc[3, col] = "12,5"
    with pytest.raises(ObservationError, match=rf"column '{col}' holds '12,5' \(row 3"):
        xdiffsr.PointObservations(df)
    with pytest.raises(ObservationError, match=f"column '{col}'"):
        _run([df])


def test_text_in_time_column():
    df = _points()
    df["time"] = df["time"].astype(object)
    df.loc[2, "time"] = "yesterday"
    with pytest.raises(ObservationError, match=r"column 'time' holds 'yesterday' \(row 2\)"):
        xdiffsr.PointObservations(df)


@pytest.mark.parametrize("col", ["value", "lat", "lon", "time"])
def test_none_in_column_is_dropped_with_a_warning(col):
    df = _points()
    df[col] = df[col].astype(object)
    df.loc[0, col] = None
    with pytest.warns(XDiffSRWarning, match="dropped 1 of 12 point observations"):
        src = xdiffsr.PointObservations(df)
    assert len(src.data) == 11


def test_latitude_out_of_range_and_odd_variable_names():
    df = _points()
    df.loc[1, "lat"] = 123.0
    with pytest.raises(ObservationError, match=r"column 'lat' holds 123.0 .*\[-90, 90\]"):
        xdiffsr.PointObservations(df)
    df = _points()
    df["variable"] = df["variable"].astype(object)
    df.loc[4, "variable"] = 850
    with pytest.raises(ObservationError, match=r"column 'variable' holds 850 \(row 4\)"):
        xdiffsr.PointObservations(df)


@pytest.mark.parametrize(
    "option, value",
    [("gamma", "1"), ("gamma", -1.0), ("sigma_y", 0.0), ("sigma_y", {"t850": math.nan}),
     ("weight", math.inf), ("weight", "2"), ("method", "nearest"), ("name", 5)],
)
def test_source_options(option, value):
    with pytest.raises(ArgumentError, match=rf"PointObservations {option}"):
        xdiffsr.PointObservations(_points(), **{option: value})
    with pytest.raises(ArgumentError, match=rf"GridObservations {option}"):
        xdiffsr.GridObservations(_coarse(), **{option: value})


@pytest.mark.parametrize("tol", ["abc", "3 parsecs", object(), "-1h"])
def test_tolerance(tol):
    with pytest.raises(ArgumentError, match="tolerance="):
        xdiffsr.PointObservations(_points(), tolerance=tol)
    with pytest.raises(ArgumentError, match="tolerance="):
        xdiffsr.GridObservations(_coarse(), tolerance=tol)
    da = xr.DataArray(np.zeros((1, 3)), dims=("time", "obs"), coords={"time": TIMES})
    with pytest.raises(ArgumentError, match="tolerance="):
        xdiffsr.CallableObservations(da, operator=lambda s: s[:, 0, 0, :3], sigma_y=1.0,
                                     tolerance=tol)


def test_grid_and_callable_data_must_be_real_numbers():
    ds = _coarse()
    ds["z500"] = ds["z500"].astype(str)
    with pytest.raises(ObservationError, match="obs dataset variable 'z500' has dtype"):
        xdiffsr.GridObservations(ds)
    da = xr.DataArray(np.full((1, 3), "x"), dims=("time", "obs"), coords={"time": TIMES})
    with pytest.raises(ArgumentError, match="CallableObservations data"):
        xdiffsr.CallableObservations(da, operator=lambda s: s[:, 0, 0, :3], sigma_y=1.0)


# ------------------------------------------------------------------------------------------
# super_resolve arguments
@pytest.mark.parametrize("weights", ["1,2", "12", [[1, 2]], [1, "2"], [True, False], {"a": 1}])
def test_weights_that_are_not_numbers(weights):
    with pytest.raises(ArgumentError, match="weights="):
        _run(tiny_observations(TIMES), weights=weights)


def test_obs_and_ds_of_the_wrong_type():
    with pytest.raises(ArgumentError, match="obs=int"):
        _run(5)
    with pytest.raises(ArgumentError, match="ds=DataArray"):
        xdiffsr.super_resolve(xr.DataArray([1]), [], model=PRIOR, **FAST)


@pytest.mark.parametrize("device", ["gpu0", "cuda:x", "banana", 3])
def test_unknown_device(device):
    with pytest.raises(ArgumentError, match=r"device="):
        _run(tiny_observations(TIMES), device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda():
    with pytest.raises(ArgumentError, match=r"device='cuda': no CUDA device is available"):
        _run(tiny_observations(TIMES), device="cuda")
    with pytest.raises(ArgumentError, match=r"device='cuda:1'"):
        _run(tiny_observations(TIMES), device="cuda:1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_out_of_range():
    n = torch.cuda.device_count()
    with pytest.raises(ArgumentError, match=rf"device='cuda:{n}': only {n} CUDA"):
        _run(tiny_observations(TIMES), device=f"cuda:{n}")


def test_huge_members_are_refused_before_allocating():
    with pytest.raises(ArgumentError, match=r"members=1000000000 .* GiB .*fewer members"):
        _run(tiny_observations(TIMES), members=10**9)


def test_output_memory_names_chunks_when_times_are_many(monkeypatch):
    monkeypatch.setattr(plan_module, "_physical_memory", lambda: 10_000_000)
    times = pd.date_range("2020-01-01", periods=40, freq="6h")
    with pytest.raises(ArgumentError, match=r"members=1000 for 40 time\(s\).*chunks="):
        xdiffsr.super_resolve(xr.Dataset(coords={"time": times}), [], model=PRIOR,
                              members=1000, steps=2)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, math.inf])
def test_bad_seeds(seed):
    with pytest.raises(ArgumentError, match="seed="):
        xdiffsr.SamplerSettings(seed=seed)
    with pytest.raises(ArgumentError, match="seed="):
        _run([], seed=seed)


def test_seeds_use_every_bit():
    t = np.datetime64("2020-01-01T00", "ns")
    seeds = [0, 1, 2**32, 2**32 + 1, 2**64, 2**200, 2**32 * 7]
    streams = {tuple(member_seeds(s, t, 3)) for s in seeds}
    assert len(streams) == len(seeds)
    ns = int(t.astype(np.int64))  # seeds below 2**32: the members of earlier releases
    old = np.random.SeedSequence([5, (ns >> 32) & 0xFFFFFFFF, ns & 0xFFFFFFFF])
    assert member_seed(5, t) == int(old.generate_state(1, dtype=np.uint64)[0] >> 1)
    assert xdiffsr.SamplerSettings(seed=2**100).seed == 2**100
    with pytest.raises(ArgumentError, match="seed="):
        member_seed(-3, t)


def test_seed_0_and_2_to_the_32_give_different_members():
    a = _run(tiny_observations(TIMES), seed=0)
    b = _run(tiny_observations(TIMES), seed=2**32)
    assert not np.allclose(a["t850"].values, b["t850"].values)


def test_all_weights_zero_warns():
    with pytest.warns(XDiffSRWarning, match=r"every source weight is 0.*prior samples"):
        xdiffsr.super_resolve(DS, tiny_observations(TIMES), weights=[0, 0], model=PRIOR, **FAST)
    src = xdiffsr.PointObservations(_points(), weight=0.0)
    with pytest.warns(XDiffSRWarning, match=r"every source weight is 0"):
        make_plan(DS, [src], None, PRIOR, xdiffsr.SamplerSettings())


def test_empty_obs_warns_unless_guidance_none():
    with pytest.warns(XDiffSRWarning, match=r"obs is empty: the members are unguided prior"):
        make_plan(DS, [], None, PRIOR, xdiffsr.SamplerSettings())
    with warnings.catch_warnings():
        warnings.simplefilter("error", XDiffSRWarning)
        make_plan(DS, [], None, PRIOR, xdiffsr.SamplerSettings(guidance="none"))
    # end to end: prior samples, finite, no diagnostics variables, and the warning
    with pytest.warns(XDiffSRWarning, match=r"obs is empty"):
        out = DS.diffsr.super_resolve([], model=PRIOR, members=2, steps=6)
    assert all(np.isfinite(out[v].values).all() for v in PRIOR.variables)
    assert "obs_chi2" not in out


# ------------------------------------------------------------------------------------------
# property tests
_JUNK = st.one_of(
    st.none(), st.just(math.nan), st.just(math.inf), st.text(max_size=4), st.booleans(),
    st.just("1e3"), st.just(b"\xff"),
)


def _column(good):
    return st.lists(st.one_of(good, _JUNK) if good is not None else _JUNK, min_size=6,
                    max_size=6)


@PROPERTY
@given(
    value=_column(st.floats(250, 290)),
    lat=_column(st.floats(-95, 95)),
    lon=_column(st.floats(-400, 400)),
    error=st.one_of(st.none(), _column(st.floats(-1, 5))),
    time=_column(st.sampled_from([TIMES[0], "2020-01-01T01", "2019-12-31T22:00"])),
    variable=_column(st.sampled_from(["t850", "z500", "q700"])),
    tolerance=st.one_of(st.none(), st.sampled_from(["3h", "0h", "-1h", "x", 5, "2 days"])),
)
def test_property_point_observations(value, lat, lon, error, time, variable, tolerance):
    value = [v + 53730.0 if var == "z500" and isinstance(v, float) else v
             for v, var in zip(value, variable)]
    df = pd.DataFrame({"time": time, "lat": lat, "lon": lon, "variable": variable,
                       "value": value})
    if error is not None:
        df["error"] = error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XDiffSRWarning)
            src = xdiffsr.PointObservations(df, tolerance=tolerance)
            out = _run([src])
    except XDiffSRError:
        return
    _assert_finite(out)


_COORD = st.lists(st.one_of(st.floats(-400, 400), st.just(math.nan)), min_size=1, max_size=5)


@PROPERTY
@given(
    lat=st.one_of(st.just(list(-67.5 + 45 * np.arange(4))), _COORD),
    lon=st.one_of(st.just(list(22.5 + 45 * np.arange(8))), _COORD),
    fill=st.one_of(st.floats(53000, 55000), st.just(math.nan), st.just(math.inf)),
    nan_at=st.one_of(st.none(), st.integers(0, 3)),
    units=st.sampled_from(["m2 s-2", "m", "K", "furlongs", None]),
    method=st.sampled_from([None, "bilinear", "conservative", "bicubic", "nearest"]),
    tolerance=st.sampled_from([None, "1h", "x", -3]),
)
def test_property_grid_observations(lat, lon, fill, nan_at, units, method, tolerance):
    vals = np.full((1, len(lat), len(lon)), 54000.0)
    if nan_at is not None and nan_at < len(lat):
        vals[0, nan_at, 0] = fill
    da = xr.DataArray(vals, dims=("time", "lat", "lon"),
                      coords={"time": TIMES, "lat": ("lat", lat, {"units": "degrees_north"}),
                              "lon": ("lon", lon, {"units": "degrees_east"})})
    if units is not None:
        da.attrs["units"] = units
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XDiffSRWarning)
            src = xdiffsr.GridObservations(xr.Dataset({"z500": da}), method=method,
                                           tolerance=tolerance)
            out = _run([src])
    except XDiffSRError:
        return
    _assert_finite(out)


@PROPERTY
@given(
    values=st.lists(st.one_of(st.floats(250, 290), st.just(math.nan)), min_size=1, max_size=4),
    sigma_y=st.one_of(st.floats(0.1, 10), st.sampled_from([0, -1, math.nan, "1", None])),
    gamma=st.one_of(st.floats(0, 10), st.sampled_from([-1, math.inf, "x"])),
    weights=st.one_of(st.none(), st.lists(st.one_of(st.floats(-1, 3), st.just(math.nan)),
                                          max_size=3),
                      st.sampled_from(["1", "1,2", b"1"])),
    seed=st.one_of(st.integers(0, 2**70), st.sampled_from([-5, 2.5, "0"])),
)
def test_property_callable_and_weights(values, sigma_y, gamma, weights, seed):
    n = len(values)
    da = xr.DataArray([values], dims=("time", "obs"), coords={"time": TIMES})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XDiffSRWarning)
            src = xdiffsr.CallableObservations(
                da, operator=lambda s: s[:, 0, 0, :n], sigma_y=sigma_y, gamma=gamma
            )
            out = _run([src, _coarse()], weights=weights, seed=seed)
    except XDiffSRError:
        return
    _assert_finite(out)


_HEAD = "#USM00070026 2010 06 01 00 2303 {n:4d} ncdc6301 ncdc6301  712889 -1567833"
_LEVELS = ["21     0 100980B   12     0B 1000     0    20    51 ",
           "10    12 100000    90B   -7B  936     9 -9999 -9999 ",
           "20 -9999  85000  1500    -5B-8888    30   270    55 "]


@st.composite
def _igra_bytes(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        levels = draw(st.lists(st.sampled_from(_LEVELS), min_size=0, max_size=4))
        n = draw(st.one_of(st.just(len(levels)), st.integers(-5, 9999)))
        lines += [_HEAD.format(n=n) if -999 <= n <= 9999 else _HEAD.format(n=0), *levels]
    data = bytearray("\n".join(lines).encode())
    for _ in range(draw(st.integers(0, 4))):  # byte damage: any byte, anywhere
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()) and data:
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@PROPERTY
@given(data=_igra_bytes(), wrap=st.sampled_from(["txt", "gz", "zip", "fake-gz", "cut-gz"]),
       on_error=st.sampled_from(["warn", "ignore", "raise"]))
def test_property_read_igra(tmp_path, data, wrap, on_error):
    p = tmp_path / f"USM00070026-data.txt{'' if wrap == 'txt' else '.' + wrap.split('-')[-1]}"
    p = p.with_name(p.name.replace(".cut", ".gz").replace(".fake", ""))
    if wrap == "gz":
        p.write_bytes(gzip.compress(data))
    elif wrap == "cut-gz":
        z = gzip.compress(data)
        p.write_bytes(z[: len(z) // 2])
    elif wrap == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("USM00070026-data.txt", data)
        p.write_bytes(buf.getvalue())
    else:
        p.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XDiffSRWarning)
            df = read_igra(p, on_error=on_error)
    except XDiffSRError:
        return
    assert isinstance(df, pd.DataFrame) and "pressure" in df
    p_ok = df["pressure"].dropna()
    assert np.isfinite(p_ok).all()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return tiny_model("fuzz").save(tmp_path_factory.mktemp("fuzz") / "fuzz.safetensors")


@PROPERTY
@given(
    action=st.sampled_from(["truncate", "flip", "random", "missing", "dir", "text"]),
    where=st.floats(0, 1),
    byte=st.integers(0, 255),
    junk=st.binary(max_size=64),
)
def test_property_load_model(tmp_path, model_file, action, where, byte, junk):
    data = bytearray(model_file.read_bytes())
    p = tmp_path / "m.safetensors"
    if action == "truncate":
        p.write_bytes(bytes(data[: int(where * len(data))]))
    elif action == "flip":
        data[int(where * (len(data) - 1))] = byte
        p.write_bytes(bytes(data))
    elif action == "random":
        p.write_bytes(junk)
    elif action == "missing":
        p = tmp_path / "absent" / "m.safetensors"
    elif action == "dir":
        p = tmp_path
    else:
        p.write_text("model = 'xdiffsr-default'\n")
    try:
        model = xdiffsr.load_model(p)
    except XDiffSRError:
        return
    for t in model.precond.state_dict().values():
        assert torch.isfinite(t).all()
    assert len(model.variables) == model.state_shape[0] == len(model.center)


def test_bad_weights_file_is_a_model_error(model_file, tmp_path):
    p = tmp_path / "m.safetensors"
    p.write_bytes(model_file.read_bytes()[:100])
    with pytest.raises(ModelError, match=r"m\.safetensors"):
        xdiffsr.load_model(p)

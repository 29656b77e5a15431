"""Tests of the IGRA v2 readers, writer and vertical operator (xdiffsr.io.igra)."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED_DATA
from xdiffsr.errors import ArgumentError, FormatError, ObservationError
from xdiffsr.io.igra import (
    QC_BITS,
    IgraFormatWarning,
    in_bbox,
    read_igra,
    read_igra_derived,
    read_station_list,
    wind_components,
    wind_direction_speed,
    write_igra,
)
from xdiffsr.observations.vertical import (
    DEFAULT_ERRORS,
    G0,
    match_times,
    parse_model_variable,
    soundings_to_observations,
)

DATA = SHARED_DATA / "igra"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"IGRA sample files not found at {DATA} (../shared/data/igra)"
)
UTQ = DATA / "USM00070026-data.txt"
UTQ_DRVD = DATA / "USM00070026-drvd.txt"
VIENNA = DATA / "AUM00011035-data.txt.gz"
LIST = DATA / "igra2-station-list-v2.2.txt"


def _read_quiet(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IgraFormatWarning)
        return read_igra(path, **kw)


# ------------------------------------------------------------------------------------------
# station list
@needs_data
def test_station_list_counts_and_rows():
    sl = read_station_list(LIST)
    assert len(sl) == 2879
    assert len(read_station_list(DATA / "igra2-station-list-2018.txt")) == 2788
    assert list(sl.columns)[:9] == ["id", "lat", "lon", "elevation", "state", "name",
                                    "first_year", "last_year", "nobs"]
    vie = sl.set_index("id").loc["AUM00011035"]
    assert (vie["lat"], vie["lon"], vie["elevation"]) == (48.2486, 16.3564, 200.0)
    assert vie["name"] == "WIEN/HOHE WARTE" and vie["state"] == ""
    assert (vie["first_year"], vie["last_year"], vie["nobs"]) == (1910, 2024, 82665)
    brw = sl.set_index("id").loc["USM00070026"]
    assert brw["state"] == "AK" and brw["lon"] == -156.7833 and brw["elevation"] == 11.9


@needs_data
def test_station_list_missing_and_mobile():
    sl = read_station_list(LIST).set_index("id")
    text = LIST.read_text().splitlines()
    n_mobile = sum(line[12:20].strip() == "-98.8888" for line in text)
    assert n_mobile == 99 and sl["mobile"].sum() == n_mobile
    polar = sl.loc["ZZV0000DBLK"]  # POLARSTERN, a ship
    assert polar["mobile"] and np.isnan(polar["lat"]) and np.isnan(polar["elevation"])
    assert np.isnan(sl.loc["CHM00055690", "elevation"])  # -999.9 = missing
    assert sl.loc["CHM00055690", "lat"] == 28.5


def test_station_list_malformed(tmp_path):
    p = tmp_path / "list.txt"
    p.write_text("ACM00078861  17.1170  -61.7830   10.0    COOLIDGE FIELD (UA)            "
                 "1947 1993  13896\n"
                 "AEM00041217  24.4333   54.6500   16.0    ABU DHABI   1983 2024 40405\n")
    with pytest.raises(FormatError, match="line 2"):
        read_station_list(p)


# ------------------------------------------------------------------------------------------
# data format, real files
@needs_data
def test_utqiagvik_counts_and_truncation_warning():
    with pytest.warns(IgraFormatWarning, match=r"USM00070026 2010 06 02 00 \(header line 318\)"):
        df = read_igra(UTQ)
    assert df.groupby("sounding").size().tolist() == [158, 157]
    assert df.attrs["igra_format"] == "data"
    (prob,) = df.attrs["igra_problems"]
    assert prob["line"] == 318 and prob["station"] == "USM00070026"
    assert "147" in prob["reason"]
    with pytest.raises(FormatError, match="USM00070026 2010 06 02 00"):
        read_igra(UTQ, on_error="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_igra(UTQ, on_error="ignore")) == 315


@needs_data
def test_utqiagvik_values_by_hand():
    df = _read_quiet(UTQ)
    s0 = df[df["sounding"] == 0].reset_index(drop=True)
    # "#USM00070026 2010 06 01 00 2303  158 ncdc6301 ncdc6301  712889 -1567833"
    assert s0["time"][0] == pd.Timestamp("2010-06-01 00:00")
    assert s0["release_time"][0] == pd.Timestamp("2010-05-31 23:03")  # released the day before
    assert (s0["lat"][0], s0["lon"][0]) == (71.2889, -156.7833)
    assert s0["p_src"][0] == "ncdc6301" and s0["np_src"][0] == "ncdc6301"
    # "21     0 100980B   12     0B 1000     0    20    51 "
    r = s0.iloc[0]
    assert (r["lvltyp1"], r["lvltyp2"], r["etime"]) == (2, 1, 0.0)
    assert (r["pressure"], r["gph"], r["rh"], r["dpdp"], r["wdir"]) == (100980, 12, 100, 0, 20)
    assert r["temperature"] == pytest.approx(273.15) and r["wspd"] == pytest.approx(5.1)
    assert (r["pflag"], r["zflag"], r["tflag"]) == ("B", "", "B")
    assert r["u"] == pytest.approx(-5.1 * np.sin(np.radians(20)))
    assert r["v"] == pytest.approx(-5.1 * np.cos(np.radians(20)))
    # "20   100  97290   309B  -24B  949     7 -9999 -9999"  (ETIME 100 = 1 min 00 s)
    r = s0.iloc[2]
    assert (r["etime"], r["pressure"], r["gph"]) == (60.0, 97290, 309)
    assert r["temperature"] == pytest.approx(270.75) and r["rh"] == pytest.approx(94.9)
    assert r["dpdp"] == pytest.approx(0.7)
    assert np.isnan(r["wdir"]) and np.isnan(r["u"]) and r["qc_removed"] == 0
    # last level of sounding 2: "30 10300  -9999 33036 -9999 -9999 -9999    69   103"
    r = df[df["sounding"] == 1].iloc[-1]
    assert (r["lvltyp1"], r["lvltyp2"], r["etime"], r["gph"]) == (3, 0, 103 * 60.0, 33036)
    assert np.isnan(r["pressure"]) and np.isnan(r["temperature"])
    assert (r["wdir"], r["wspd"]) == (69, pytest.approx(10.3))
    assert df["time"].dtype == "datetime64[ns]" and df["release_time"].dtype == "datetime64[ns]"


@needs_data
def test_vienna_counts_and_qc_removed_values():
    df = read_igra(VIENNA)
    assert len(df) == 34160 and df["sounding"].nunique() == 321
    assert df.attrs["igra_problems"] == []
    raw = gzip.decompress(VIENNA.read_bytes()).decode().splitlines()
    assert sum(line.startswith("#") for line in raw) == 321
    assert df["time"].min() == pd.Timestamp("2015-01-23 12:00")
    assert df["time"].max() == pd.Timestamp("2015-06-30 12:00")
    # file line 15216, level 38 of "#AUM00011035 2015 04 03 00 2332   82 ...":
    # "10 -9999   7000 18010B-8888 -9999 -8888   305   390 "
    s = df[df["time"] == "2015-04-03 00:00"].reset_index(drop=True)
    assert len(s) == 82 and s["release_time"][0] == pd.Timestamp("2015-04-02 23:32")
    r = s.iloc[15216 - 15178 - 1]
    assert (r["pressure"], r["gph"], r["zflag"], r["wdir"]) == (7000, 18010, "B", 305)
    assert np.isnan(r["temperature"]) and np.isnan(r["dpdp"]) and np.isnan(r["rh"])
    assert r["qc_removed"] == QC_BITS["temperature"] | QC_BITS["dpdp"]
    assert r["u"] == pytest.approx(-39.0 * np.sin(np.radians(305)))  # from NW: eastward
    assert r["u"] > 0 and r["v"] < 0
    # file line 27135: "10 -9999   1000 31340B -381B-9999   350 -9999 -8888 "
    s = df[df["time"] == "2015-05-28 12:00"].reset_index(drop=True)
    r = s.iloc[27135 - 27024 - 1]
    assert (r["pressure"], r["gph"], r["dpdp"]) == (1000, 31340, 35.0)
    assert r["temperature"] == pytest.approx(273.15 - 38.1)
    assert np.isnan(r["wdir"]) and np.isnan(r["wspd"]) and r["qc_removed"] == QC_BITS["wspd"]


@needs_data
def test_filters(tmp_path):
    df = read_igra(VIENNA, start="2015-03-01", end="2015-03-31T23")
    assert df["sounding"].nunique() == df["time"].nunique()
    assert df["time"].min() >= pd.Timestamp("2015-03-01")
    assert df["time"].max() <= pd.Timestamp("2015-03-31T23")
    assert 50 <= df["sounding"].nunique() <= 62
    assert read_igra(VIENNA, bbox=(10, 45, 20, 50))["sounding"].nunique() == 321
    assert len(read_igra(VIENNA, bbox=(-130, 45, -60, 50))) == 0
    assert len(read_igra(VIENNA, stations=["USM00070026"])) == 0
    # directory and list inputs, station filter picks the station's files
    for name in ("AUM00011035-data.txt.gz", "USM00070026-data.txt"):
        (tmp_path / name).write_bytes((DATA / name).read_bytes())
    both = _read_quiet(tmp_path)
    assert both["station"].value_counts().to_dict() == {"AUM00011035": 34160,
                                                         "USM00070026": 315}
    assert both["sounding"].nunique() == 323
    one = _read_quiet([tmp_path], stations="USM00070026")
    assert set(one["station"]) == {"USM00070026"} and len(one) == 315
    with pytest.raises(ArgumentError, match="bbox"):
        read_igra(VIENNA, bbox=(0, 50, 10, 40))
    with pytest.raises(ArgumentError, match="on_error"):
        read_igra(VIENNA, on_error="skip")


# ------------------------------------------------------------------------------------------
# derived format
@needs_data
def test_derived_counts_values_and_autodetect():
    with pytest.warns(IgraFormatWarning, match="USM00070026 2014 09 11 00"):
        df = read_igra(UTQ_DRVD, station_list=LIST)
    assert df.attrs["igra_format"] == "derived"
    assert df.groupby("sounding").size().tolist() == [120, 97]
    r = df.iloc[0]
    # " 102095      15      15    2749    -136    2732 ... 820     822   -3182     -60 ... -39"
    assert (r["pressure"], r["gph"], r["gph_calc"]) == (102095, 15, 15)
    assert r["temperature"] == pytest.approx(274.9) and r["rh"] == pytest.approx(82.0)
    assert (r["u"], r["v"]) == (pytest.approx(-6.0), pytest.approx(-3.9))
    assert r["wspd"] == pytest.approx(np.hypot(6.0, 3.9))
    assert r["wdir"] == pytest.approx(np.degrees(np.arctan2(6.0, 3.9)))  # from the north-east
    assert r["lvltyp2"] == 1 and r["vappress"] == pytest.approx(5.706)
    assert (r["pw"], r["cape"], r["lclpress"]) == (pytest.approx(7.21), 8, 97903)
    assert np.isnan(r["invpress"])
    assert (r["lat"], r["lon"]) == (71.2889, -156.7833)
    assert r["release_time"] == pd.Timestamp("2014-09-09 23:04")
    # 1000 hPa is a standard level
    assert df.loc[df["pressure"] == 100000, "lvltyp1"].eq(1).all()
    # no station list: coordinates are NaN, the explicit reader gives the same levels
    plain = _read_quiet(UTQ_DRVD)
    assert plain["lat"].isna().all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IgraFormatWarning)
        np.testing.assert_array_equal(read_igra_derived(UTQ_DRVD)["temperature"],
                                      df["temperature"])
        with pytest.raises(FormatError, match="derived"):
            read_igra(UTQ_DRVD, kind="data")


# ------------------------------------------------------------------------------------------
# malformed files
HEAD = "#USM00070026 2010 06 01 00 2303 {n:4d} ncdc6301 ncdc6301  712889 -1567833"
L1 = "21     0 100980B   12     0B 1000     0    20    51 "
L2 = "10    12 100000    90B   -7B  936     9 -9999 -9999 "


def _write(tmp_path, lines, name="USM00070026-data.txt"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_truncated_middle_sounding_is_dropped_others_kept(tmp_path):
    h2 = HEAD.replace("06 01 00", "06 01 12")
    p = _write(tmp_path, [HEAD.format(n=3), L1, L2, h2.format(n=2), L1, L2])
    with pytest.warns(IgraFormatWarning, match=r"2010 06 01 00 \(header line 1\).*3 levels"):
        df = read_igra(p)
    assert df["time"].unique().tolist() == [pd.Timestamp("2010-06-01 12:00")]
    assert len(df) == 2


def test_extra_and_shifted_lines_are_reported(tmp_path):
    shifted = " " + L2[:-1]  # one column to the right
    letter = L2.replace("  -7B", "  -7X")
    h2 = HEAD.replace("06 01 00", "06 01 12")
    h3 = HEAD.replace("06 01 00", "06 02 00")
    h4 = HEAD.replace("06 01 00", "06 02 12")
    p = _write(tmp_path, [HEAD.format(n=1), L1, L2, h2.format(n=2), L1, shifted,
                          h3.format(n=2), L1, letter, h4.format(n=2), L1, L2])
    with pytest.warns(IgraFormatWarning) as rec:
        df = read_igra(p)
    msg = next(str(w.message) for w in rec if issubclass(w.category, IgraFormatWarning))
    assert "header line 1): header announces 1 levels but 2 lines follow" in msg
    assert "2010 06 01 12 (header line 4): malformed level record at line 6" in msg
    assert "2010 06 02 00 (header line 7): malformed level record at line 9" in msg
    assert df["time"].unique().tolist() == [pd.Timestamp("2010-06-02 12:00")]
    assert len(df["time"]) == 2 and len(df.attrs["igra_problems"]) == 3


def test_malformed_header_and_not_igra(tmp_path):
    bad = HEAD.format(n=2).replace("2010 06 01", "2010 13 01")  # month 13
    p = _write(tmp_path, [bad, L1, L2])
    with pytest.raises(FormatError, match="malformed header"):
        read_igra(p, on_error="raise")
    q = tmp_path / "other.txt"
    q.write_text("time,value\n1,2\n")
    with pytest.raises(FormatError, match="no header record"):
        read_igra(q)


def test_blank_lines_and_crlf(tmp_path):
    p = tmp_path / "x-data.txt"
    p.write_bytes(("\r\n".join([HEAD.format(n=2), L1, L2]) + "\r\n\r\n\n").encode())
    df = read_igra(p)
    assert len(df) == 2 and df.attrs["igra_problems"] == []
    assert df["pressure"].tolist() == [100980, 100000]


# ------------------------------------------------------------------------------------------
# writer: real-file round trip and property test
@needs_data
def test_write_reproduces_vienna_file(tmp_path):
    df = read_igra(VIENNA)
    out = tmp_path / "v-data.txt.gz"
    write_igra(df, out)
    orig = gzip.decompress(VIENNA.read_bytes()).decode().splitlines()
    new = gzip.decompress(out.read_bytes()).decode().splitlines()
    assert [x.rstrip() for x in orig] == [x.rstrip() for x in new]


def _soundings(n_snd, n_lev, rng_seed):
    """Random soundings on the format's precision grid (values as read_igra returns them)."""
    rng = np.random.default_rng(rng_seed)
    n = n_snd * n_lev
    snd = np.repeat(np.arange(n_snd), n_lev)

    def maybe(x, p=0.2):
        return np.where(rng.random(n) < p, np.nan, x)

    base = pd.Timestamp("1950-01-01") + pd.to_timedelta(rng.integers(0, 150 * 365, n_snd), "D")
    hour = rng.integers(0, 24, n_snd)
    time = (base + pd.to_timedelta(hour, "h")).to_numpy("datetime64[ns]")
    rel = time + (rng.integers(-11 * 60, 11 * 60, n_snd) * np.timedelta64(1, "m"))
    rel = np.where(rng.random(n_snd) < 0.2, np.datetime64("NaT"), rel)
    odd = (rng.random(n_snd) < 0.2) & ~np.isnat(rel)  # hour 99: time = release time
    time = np.where(odd, rel, time)
    ids = np.array(["".join(rng.choice(list("ABCXYZ0123456789"), 11)) for _ in range(n_snd)])
    wdir, wspd = maybe(rng.integers(0, 361, n).astype(float)), maybe(rng.integers(0, 999, n) / 10)
    qc = np.where(rng.random(n) < 0.1, QC_BITS["temperature"], 0).astype(np.int16)
    temp = np.where(qc > 0, np.nan, maybe(rng.integers(-900, 500, n) / 10 + 273.15))
    df = pd.DataFrame({
        "station": ids[snd], "sounding": snd, "time": time[snd], "release_time": rel[snd],
        "lat": (rng.integers(-900000, 900001, n_snd) / 1e4)[snd],
        "lon": (rng.integers(-1800000, 1800001, n_snd) / 1e4)[snd],
        "lvltyp1": rng.integers(1, 4, n).astype(np.int8),
        "lvltyp2": rng.integers(0, 3, n).astype(np.int8),
        "etime": maybe(rng.integers(0, 999, n) * 60.0 + rng.integers(0, 60, n)),
        "pressure": maybe(rng.integers(1, 110001, n).astype(float)),
        "gph": maybe(rng.integers(-999, 40000, n).astype(float)),
        "temperature": temp, "rh": maybe(rng.integers(0, 1001, n) / 10),
        "dpdp": maybe(rng.integers(0, 700, n) / 10), "wdir": wdir, "wspd": wspd,
        "pflag": rng.choice(["", "A", "B"], n), "zflag": rng.choice(["", "A", "B"], n),
        "tflag": rng.choice(["", "A", "B"], n), "qc_removed": qc,
        "p_src": "ncdc-gts", "np_src": "",
    })
    df["u"], df["v"] = wind_components(df["wdir"], df["wspd"])
    return df


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_snd=st.integers(1, 5), n_lev=st.integers(1, 30), seed=st.integers(0, 2**31 - 1),
       gz=st.booleans())
def test_write_read_round_trip_property(tmp_path, n_snd, n_lev, seed, gz):
    df = _soundings(n_snd, n_lev, seed)
    path = tmp_path / ("rt-data.txt.gz" if gz else "rt-data.txt")
    write_igra(df, path)
    back = read_igra(path, on_error="raise")
    assert len(back) == len(df)
    for c in ("station", "sounding", "pflag", "zflag", "tflag", "p_src", "np_src", "lvltyp1",
              "lvltyp2", "qc_removed"):
        assert back[c].tolist() == df[c].tolist(), c
    for c in ("time", "release_time"):
        np.testing.assert_array_equal(back[c].to_numpy(), df[c].to_numpy())
    for c in ("lat", "lon", "etime", "pressure", "gph", "temperature", "rh", "dpdp", "wdir",
              "wspd", "u", "v"):
        np.testing.assert_allclose(back[c], df[c], rtol=0, atol=1e-9, err_msg=c)


def test_writer_rejects_bad_input(tmp_path):
    df = _soundings(1, 3, 0)
    with pytest.raises(ArgumentError, match="longer than 11"):
        write_igra(df.assign(station="TOO-LONG-STATION"), tmp_path / "a.txt")
    with pytest.raises(ArgumentError, match="lacks columns"):
        write_igra(df.drop(columns="pressure"), tmp_path / "a.txt")
    with pytest.raises(FormatError, match="gph=123456 does not fit"):
        write_igra(df.assign(gph=123456.0), tmp_path / "a.txt")


def test_writer_fills_direction_from_components(tmp_path):
    df = _soundings(1, 4, 1).assign(wdir=np.nan, wspd=np.nan, u=[0.0, -10.0, 0.0, 3.0],
                                          v=[-10.0, 0.0, 10.0, 4.0])
    write_igra(df, tmp_path / "w.txt")
    back = read_igra(tmp_path / "w.txt")
    np.testing.assert_allclose(back["wdir"], [0, 90, 180, np.degrees(np.arctan2(-3, -4)) + 360],
                               atol=0.5)
    np.testing.assert_allclose(back["wspd"], [10, 10, 10, 5])


# ------------------------------------------------------------------------------------------
# winds, boxes, names
def test_wind_components_known_directions():
    u, v = wind_components([0, 90, 180, 270, 45], [10, 10, 10, 10, np.sqrt(2)])
    np.testing.assert_allclose(u, [0, -10, 0, 10, -1], atol=1e-12)
    np.testing.assert_allclose(v, [-10, 0, 10, 0, -1], atol=1e-12)
    d, s = wind_direction_speed(u, v)
    np.testing.assert_allclose(d, [0, 90, 180, 270, 45], atol=1e-9)
    np.testing.assert_allclose(s, [10, 10, 10, 10, np.sqrt(2)])
    assert wind_direction_speed([0.0], [0.0])[0][0] == 0.0  # calm


def test_in_bbox_conventions():
    lat = np.array([0.0, 0.0, 0.0, 50.0, np.nan])
    lon = np.array([179.0, -179.0, 0.0, 350.0, 0.0])
    np.testing.assert_array_equal(in_bbox(lat, lon, (170, -10, -170, 10)),
                                  [True, True, False, False, False])
    np.testing.assert_array_equal(in_bbox(lat, lon, (-20, 40, 20, 60)),
                                  [False, False, False, True, False])
    np.testing.assert_array_equal(in_bbox(lat, lon, (-180, -90, 180, 90)),
                                  [True, True, True, True, False])


def test_parse_model_variable():
    assert parse_model_variable("t850") == ("t", 850)
    assert parse_model_variable("z500") == ("z", 500)
    assert parse_model_variable("gh1000") == ("gh", 1000)
    for name in ("sp", "t2m", "u10", "v100", "msl", "t0", "T850", "t850x", 850):
        assert parse_model_variable(name) is None, name


# ------------------------------------------------------------------------------------------
# vertical operator
def _profile(p_hpa, temp, sounding=0, station="X", time="2020-01-01T00", **cols):
    n = len(p_hpa)
    d = {"station": station, "sounding": sounding, "time": pd.Timestamp(time), "lat": 10.0,
         "lon": 20.0, "pressure": np.asarray(p_hpa, float) * 100, "temperature": temp,
         "gph": cols.pop("gph", np.full(n, np.nan)), "u": cols.pop("u", np.full(n, np.nan)),
         "v": cols.pop("v", np.full(n, np.nan)), "rh": np.full(n, np.nan)}
    d.update(cols)
    return pd.DataFrame(d)


def test_vertical_operator_exact_for_log_linear_profile():
    p = np.array([1013.0, 900.0, 780.0, 610.0, 470.0, 260.0, 240.0, 120.0])
    lnp = np.log(p * 100)
    temp = 200.0 + 8.0 * lnp  # linear in ln p: the operator must be exact
    gph = -7000.0 * (lnp - np.log(101300.0))
    u = 3.0 - 2.0 * lnp
    df = _profile(p, temp, gph=gph, u=u, v=-u)
    obs = soundings_to_observations(df, ["t850", "t500", "t250", "z500", "u250", "v850", "sp"])
    got = obs.set_index("variable")["value"]
    assert set(got.index) == {"t850", "t500", "t250", "z500", "u250", "v850"}
    for name, f in (("t850", lambda x: 200 + 8 * x), ("t500", lambda x: 200 + 8 * x),
                    ("t250", lambda x: 200 + 8 * x), ("u250", lambda x: 3 - 2 * x),
                    ("z500", lambda x: -7000 * G0 * (x - np.log(101300.0))),
                    ("v850", lambda x: -(3 - 2 * x))):
        level = parse_model_variable(name)[1]
        assert got[name] == pytest.approx(f(np.log(level * 100.0)), rel=1e-12), name
    err = obs.set_index("variable")["error"]
    assert err["t850"] == DEFAULT_ERRORS["t"] and err["z500"] == DEFAULT_ERRORS["z"]
    assert obs["time"].dtype == "datetime64[ns]"
    assert list(obs.columns) == [
        "time", "lat", "lon", "variable", "value", "error", "units", "station"
    ]
    assert set(obs["units"]) <= {"K", "m s-1", "m2 s-2"}  # the model units of t, u, v, z


def test_vertical_operator_brackets_gaps_and_reference():
    rng = np.random.default_rng(3)
    frames, ref = [], {}
    for s in range(6):  # soundings with different tops, bottoms and missing values
        p = np.sort(rng.uniform(150, 1000, 12))[::-1]
        t = rng.normal(250, 10, 12)
        t[rng.random(12) < 0.2] = np.nan
        frames.append(_profile(p, t, sounding=s, station=f"S{s}"))
        ok = np.isfinite(t)
        x, y = np.log(p[ok] * 100)[::-1], t[ok][::-1]
        for lev in (850, 500, 250):
            lx = np.log(lev * 100.0)
            if x.size and x[0] <= lx <= x[-1]:
                ref[(f"S{s}", f"t{lev}")] = np.interp(lx, x, y)
    df = pd.concat(frames, ignore_index=True)
    obs = soundings_to_observations(df, ["t850", "t500", "t250"])
    got = {(r.station, r.variable): r.value for r in obs.itertuples()}
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-12)


def test_vertical_operator_no_extrapolation_exact_level_and_max_gap():
    df = _profile([1000.0, 700.0, 300.0], [280.0, 265.0, 230.0])
    obs = soundings_to_observations(df, ["t1000", "t850", "t250", "t300"])
    got = obs.set_index("variable")["value"]
    assert set(got.index) == {"t1000", "t850", "t300"}  # 250 hPa is above the top
    assert got["t1000"] == 280.0 and got["t300"] == 230.0
    gap = np.log(700 / 300)
    limited = soundings_to_observations(df, ["t500", "t850"], max_gap_log_p=gap * 0.9)
    assert limited["variable"].tolist() == ["t850"]


def test_vertical_operator_errors_override_and_humidity():
    df = _profile([1000.0, 500.0], [280.0, 250.0], dpdp=[2.0, 2.0])
    obs = soundings_to_observations(df, ["t700", "q1000"], errors={"t": 0.5, "t700": 0.7})
    err = obs.set_index("variable")["error"]
    assert err["t700"] == 0.7 and err["q1000"] == DEFAULT_ERRORS["q"]
    td = 280.0 - 2.0 - 273.15
    e = 6.112 * np.exp(17.67 * td / (td + 243.5))  # Bolton (1980) eq. 10, hPa
    q = obs.set_index("variable")["value"]["q1000"]
    assert q == pytest.approx(0.622 * e / (1000.0 - 0.378 * e))
    with pytest.raises(ArgumentError, match="errors key"):
        soundings_to_observations(df, ["t700"], errors={"temperature": 1.0})
    with pytest.raises(ArgumentError, match="positive"):
        soundings_to_observations(df, ["t700"], errors={"t": -1.0})
    with pytest.raises(ObservationError, match="lacks columns"):
        soundings_to_observations(df.drop(columns="temperature"), ["t700"])
    with pytest.warns(Warning, match="w500"):
        soundings_to_observations(df, ["w500"])


@needs_data
def test_vertical_operator_on_vienna():
    df = read_igra(VIENNA)
    obs = soundings_to_observations(df, ["t850", "z500", "u250", "sp"])
    counts = obs["variable"].value_counts()
    assert counts["t850"] == 321 and counts["z500"] <= 321 and counts["u250"] <= 321
    # 850 hPa is a standard level: the operator returns the reported value exactly
    std = df[df["pressure"] == 85000].drop_duplicates("sounding").set_index("time")["temperature"]
    t850 = obs[obs["variable"] == "t850"].set_index("time")["value"]
    common = std.dropna().index
    np.testing.assert_allclose(t850[common], std[common])
    z = obs[obs["variable"] == "z500"]["value"] / G0
    assert z.between(4800, 6000).all()


# ------------------------------------------------------------------------------------------
# time matching
def test_match_times():
    tgt = pd.to_datetime(["2015-01-02 00:00", "2015-01-01 12:00", "2015-01-01 18:00",
                          "2015-01-02 06:00"])
    obs = pd.to_datetime(["2015-01-01 23:03", "2015-01-01 12:00", "2015-01-02 03:00",
                          "2015-01-02 09:30", "NaT", "2015-01-01 08:59", "2015-01-01 09:00"])
    idx = match_times(obs, tgt, tolerance="3h")
    # 23:03 -> 00; exact; 03:00 is a tie between 00 and 06 -> earlier; 09:30 is 3.5 h away
    assert idx.tolist() == [0, 1, 0, -1, -1, -1, 1]
    assert match_times(obs, tgt, tolerance=pd.Timedelta("4h"))[3] == 3
    assert (match_times(obs, tgt[:0]) == -1).all()
    with pytest.raises(ArgumentError, match="tolerance"):
        match_times(obs, tgt, tolerance="-1h")


def test_soundings_to_observations_target_times():
    df = pd.concat([
        _profile([1000.0, 500.0], [280.0, 250.0], sounding=0, time="2015-01-01 23:03"),
        _profile([1000.0, 500.0], [281.0, 251.0], sounding=1, time="2015-01-01 16:00"),
    ], ignore_index=True)
    tgt = pd.to_datetime(["2015-01-02 00:00", "2015-01-01 12:00"])
    obs = soundings_to_observations(df, ["t850"], target_times=tgt)
    assert obs["time"].tolist() == [pd.Timestamp("2015-01-02 00:00")]
    assert obs["obs_time"].tolist() == [pd.Timestamp("2015-01-01 23:03")]


@needs_data
def test_zip_and_gz_inputs_equal_plain(tmp_path):
    import zipfile

    plain = _read_quiet(UTQ)
    zpath = tmp_path / "USM00070026-data.txt.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(UTQ, "USM00070026-data.txt")
    gpath = tmp_path / "USM00070026-data.txt.gz"
    gpath.write_bytes(gzip.compress(UTQ.read_bytes()))
    for p in (zpath, gpath):
        pd.testing.assert_frame_equal(_read_quiet(p), plain)

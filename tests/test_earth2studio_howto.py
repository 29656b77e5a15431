"""docs/howto-earth2studio.md runs as written: its code blocks on the real ERA5 sample, the
protocol block against the real earth2studio, and its quoted error message is the real one."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from xdiffsr.errors import ObservationError

PAGE = Path(__file__).resolve().parents[1] / "docs" / "howto-earth2studio.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", PAGE.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def page_namespace(shared_data):
    if not (shared_data / "era5" / "era5_ens10_3deg_z_t_2017-01.nc").is_file():
        pytest.skip("the ERA5 3-degree ensemble sample (shared/data/era5) is absent")
    ns: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(_blocks("python")[0], str(PAGE), "exec"), ns)
    return ns


def test_the_example_runs_and_beats_bilinear_interpolation(page_namespace):
    """The generator's last ensemble (frame and coarse field) against the truth: its mean is
    closer than bilinear interpolation of the coarse field, on every variable."""
    ns = page_namespace
    ens = ns["ens"]
    assert ens.dims == ("ensemble", "time", "variable", "lat", "lon")
    assert ens.sizes["ensemble"] == 8
    flat, t = ns["flat"], ns["flat"].time.values[-1]
    for v in ("t850", "t500", "z850", "z500"):
        truth = flat[v].sel(time=t, number=0).values
        mean = ens.sel(variable=v).mean("ensemble")[0].values
        bil = ns["to_fine"](ns["coarse"](t).sel(variable=v)[0]).values
        assert np.sqrt(((mean - truth) ** 2).mean()) < np.sqrt(((bil - truth) ** 2).mean()), v


def test_the_protocol_block_against_earth2studio(page_namespace):
    pytest.importorskip("earth2studio.models.da.base",
                        reason="earth2studio not installed: pip install 'xdiffsr[earth2studio]'")
    ns = dict(page_namespace)
    exec(compile(_blocks("python")[1], str(PAGE), "exec"), ns)
    assert list(ns["coords"]) == ["ensemble", "time", "variable", "lat", "lon"]


def test_the_quoted_error_is_the_real_one(page_namespace):
    ns = page_namespace
    df = ns["frame"](ns["t2"])
    df.loc[0, "variable"] = "sp"
    df.loc[1, "variable"] = "q"
    with pytest.raises(ObservationError) as err:
        ns["da_model"](df)
    quoted = " ".join(_blocks("text")[0].split()).removeprefix("ObservationError: ")
    assert " ".join(str(err.value).split()) == quoted

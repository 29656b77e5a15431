"""The command lines fail with one line on stderr and exit status 2, without a traceback.

No test runs a model: every case is refused while parsing or before any reconstruction starts.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import xdiffsr
from xdiffsr.__main__ import main
from xdiffsr.train.__main__ import main as train_main


def _one_line(err: str, prog: str = "xdiffsr") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["demo", "--model", "missing.safetensors"], "missing.safetensors"),
        (["demo", "--model", "no-such-model"], "unknown model"),
        (["demo", "--members", "0"], "--members"),
        (["demo", "--steps", "many"], "--steps"),
        (["demo", "--guidance", "magic"], "--guidance"),
        (["evaluate", "--truth", "missing.zarr"], "missing.zarr"),
        (["evaluate", "--stations", "missing.csv"], "missing.csv"),
        (["evaluate", "--lead", "5h"], "multiple of 6h"),
        (["evaluate", "--weights", "-1"], "--weights"),
        (["evaluate", "--withhold", "1.5"], "--withhold"),
        (["sequential", "--truth", "missing.zarr"], "missing.zarr"),
        (["sequential"], "--truth"),
        (["sequential", "--truth", ".", "--days", "0"], "--days"),
        (["sequential", "--truth", ".", "--start", "yesterday-ish"], "--start"),
        (["bogus"], "invalid choice"),
        (["demo", "--no-such-option"], "--no-such-option"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert needle in _one_line(captured.err)


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "out"
    f.write_text("")
    assert main(["demo", "--out", str(f)]) == 2
    assert "is a file" in _one_line(capsys.readouterr().err)


def test_device_without_cuda_is_refused(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["demo", "--device", "cuda"]) == 2
    assert "CUDA is not available" in _one_line(capsys.readouterr().err)


def test_xdiffsr_error_while_running_is_one_line(tmp_path, capsys):
    st = tmp_path / "st.csv"
    st.write_text("id,lat,lon\nA,10,20\n")
    argv = ["evaluate", "--stations", str(st), "--stations-year", "2020", "--no-figures"]
    assert main(argv) == 2  # ArgumentError before any reconstruction
    assert "--stations-year" in _one_line(capsys.readouterr().err)
    with pytest.raises(xdiffsr.ArgumentError):
        main([*argv, "--debug"])


def test_unreadable_data_is_one_line_and_exit_1(tmp_path, capsys):
    bad = tmp_path / "truth.nc"
    bad.write_text("not netCDF")
    assert main(["sequential", "--truth", str(bad)]) == 1
    assert "--debug" in _one_line(capsys.readouterr().err)


def test_version_and_help_show_defaults(capsys):
    assert main(["--version"]) == 0
    assert xdiffsr.__version__ in capsys.readouterr().out
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "(default: 4)" in out and "(default: jf)" in out
    assert main(["evaluate", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 12h)" in out
    # an experiment's own sampler default (4 members) says the library's (SamplerSettings: 8)
    assert ("ensemble members (this command's own default; the library's is "
            f"{xdiffsr.SamplerSettings().members}) (default: 4)") in out
    assert main(["super-resolve", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"ensemble members (default: {xdiffsr.SamplerSettings().members})" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--out", "o", "--config", "missing.json"], "missing.json"),
        (["--out", "o", "--data", "missing.zarr"], "missing.zarr"),
        (["--out", "o", "--steps", "-3"], "--steps"),
        (["--out", "o", "--lr", "fast"], "--lr"),
        (["--out", "o", "--unet", "{model_channels: 32"], "not valid JSON"),
        (["--steps", "5"], "--out"),
    ],
)
def test_train_usage_errors(argv, needle, capsys):
    assert train_main(argv) == 2
    assert needle in _one_line(capsys.readouterr().err, "xdiffsr.train")


def test_train_bad_json_config_and_defaults(tmp_path, capsys):
    cfg = tmp_path / "run.json"
    cfg.write_text("{bad json")
    assert train_main(["--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    assert "run.json" in _one_line(capsys.readouterr().err, "xdiffsr.train")
    assert train_main(["--version"]) == 0
    assert xdiffsr.__version__ in capsys.readouterr().out


@pytest.mark.parametrize(
    "module, argv",
    [
        ("xdiffsr", ["evaluate", "--truth", "missing.zarr"]),
        ("xdiffsr.train", ["--out", "o", "--config", "missing.json"]),
    ],
)
def test_end_to_end_no_traceback(module, argv, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", module, *argv], capture_output=True, text=True, cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 2
    assert "missing" in _one_line(res.stderr, module)
    assert res.stdout == ""


# ---------------------------------------------------------------- super-resolve and train
@pytest.mark.parametrize(
    "argv, needle",
    [
        (["super-resolve", "missing.csv", "--out", "o.nc", "--times", "2021-01-01"],
         "missing.csv"),
        (["super-resolve", ".", "--out", "o.txt", "--times", "2021-01-01"], ".nc or .zarr"),
        (["super-resolve", ".", "--out", "o.nc", "--times", "someday"], "--times"),
        (["super-resolve", ".", "--out", "o.nc"], "--times"),
        (["super-resolve", ".", "--out", "o.nc", "--times", "2021-01-01", "--members", "0"],
         "--members"),
        (["super-resolve", ".", "--out", "o.nc", "--times-file", "missing.txt"], "missing.txt"),
        (["super-resolve", ".", "--out", "o.nc", "--times", "2021-01-01", "--model", "nope"],
         "unknown model"),
        (["train", "--out", "o", "--config", "missing.json"], "missing.json"),
        (["train", "--out", "o", "--steps", "-3"], "--steps"),
    ],
)
def test_new_subcommand_usage_errors(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in _one_line(capsys.readouterr().err)


def test_super_resolve_weights_must_match_the_files(tmp_path, capsys):
    csv = tmp_path / "obs.csv"
    csv.write_text("time,lat,lon,variable,value\n2021-01-01,10,20,t850,280\n")
    argv = ["super-resolve", str(csv), "--out", str(tmp_path / "o.nc"), "--times", "2021-01-01",
            "--weights", "1", "2"]
    assert main(argv) == 2
    assert "--weights" in _one_line(capsys.readouterr().err)


def test_train_subcommand_help_and_listing(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "xdiffsr train" in out and "--max-steps-this-run" in out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "super-resolve" in out and "train" in out
    assert main(["super-resolve", "--help"]) == 0
    assert "(default: 15)" in capsys.readouterr().out


def test_super_resolve_end_to_end_on_a_csv_table(tmp_path, capsys):
    import numpy as np
    import pandas as pd
    import xarray as xr

    from tests.conftest import tiny_model

    model = tiny_model().save(tmp_path / "tiny.safetensors")
    g = np.random.default_rng(0)
    pd.DataFrame({
        "time": "2021-01-01T00:00", "lat": g.uniform(-60, 60, 10), "lon": g.uniform(0, 360, 10),
        "variable": ["t850"] * 5 + ["z500"] * 5,
        "value": np.r_[g.normal(270, 3, 5), g.normal(54000, 200, 5)],
        "units": ["K"] * 5 + ["m2 s-2"] * 5,
    }).to_csv(tmp_path / "obs.csv", index=False)
    (tmp_path / "times.txt").write_text("2021-01-01T00\n2021-01-01T12\n")
    out = tmp_path / "recon.nc"
    argv = ["super-resolve", str(tmp_path / "obs.csv"), "--model", str(model), "--out", str(out),
            "--times-file", str(tmp_path / "times.txt"), "--members", "2", "--steps", "4",
            "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    with xr.open_dataset(out) as ds:
        assert {"t850", "z500"} <= set(ds.data_vars)
        assert ds.sizes["member"] == 2 and ds.sizes["time"] == 2
        assert np.isfinite(ds["t850"].values).all() and np.isfinite(ds["z500"].values).all()
    assert main(argv) == 2  # the output exists now
    assert "--overwrite" in _one_line(capsys.readouterr().err)


def test_super_resolve_igra_file_and_grid_file_to_zarr(tmp_path, capsys):
    """The real Vienna IGRA file and a netCDF grid file, two weights, written to a zarr store."""
    import numpy as np
    import xarray as xr

    from tests.conftest import SHARED_DATA, TINY_LAT, TINY_LON, tiny_model

    igra = SHARED_DATA / "igra" / "AUM00011035-data.txt.gz"
    if not igra.is_file():
        pytest.skip(f"IGRA sample not found: {igra} (../shared/data/igra)")
    model = tiny_model().save(tmp_path / "tiny.safetensors")
    lat, lon = TINY_LAT[::2] + 11.25, TINY_LON[::2] + 11.25  # a coarser 4 x 8 grid
    grid = xr.Dataset(
        {"t850": (("time", "lat", "lon"), np.full((1, 4, 8), 265.0), {"units": "K"})},
        coords={
            "time": [np.datetime64("2015-01-24T00")],
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )
    grid.to_netcdf(tmp_path / "coarse.nc")
    out = tmp_path / "recon.zarr"
    argv = ["super-resolve", str(igra), str(tmp_path / "coarse.nc"), "--weights", "1", "0.5",
            "--model", str(model), "--out", str(out), "--times", "2015-01-24T00",
            "--members", "2", "--steps", "4", "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    with xr.open_zarr(out) as ds:
        assert ds.sizes["member"] == 2 and ds.sizes["time"] == 1
        assert np.isfinite(ds["t850"].values).all()
        assert "igra" in ds.attrs["sources"] and "[1.0, 0.5]" in ds.attrs["weights"]


def test_cli_sampler_defaults_are_the_library_defaults():
    """``evaluate``/``sequential`` start from :class:`xdiffsr.SamplerSettings`' steps and
    guidance (the CLI does not import torch to build its parser, so it repeats them)."""
    import argparse

    from xdiffsr.__main__ import _add_sampler

    p = argparse.ArgumentParser()
    _add_sampler(p)
    args = p.parse_args([])
    default = xdiffsr.SamplerSettings()
    assert (args.steps, args.guidance, args.cg_iters) == (
        default.steps, default.guidance, default.cg_iters)


def test_evaluate_prior_report_option(tmp_path, monkeypatch):
    """``--prior-report`` writes the report of the model on the chosen truth times."""
    import pandas as pd

    import xdiffsr.evaluation.prior_report as pr
    import xdiffsr.evaluation.suite as suite
    from xdiffsr.__main__ import main

    rows = [{"configuration": "LR", "weight": 1.0, "variable": "t850", "units": "K",
             "metric": "rmse", "value": 1.0}]
    monkeypatch.setattr(suite, "evaluate", lambda *a, **k: pd.DataFrame(rows))
    seen = {}

    class Report:
        def to_markdown(self):
            return "REPORT TABLES\n"

    def fake_report(model, truth, **kw):  # the expensive part, replaced
        seen.update(model=model.name, times=truth.sizes["time"], **kw)
        return Report()

    monkeypatch.setattr(pr, "prior_report", fake_report)
    out = tmp_path / "ev"
    assert main(["evaluate", "--out", str(out), "--times", "1", "--members", "3",
                 "--no-figures", "--prior-report"]) == 0
    assert (out / "prior-report.md").read_text() == "REPORT TABLES\n"
    assert seen["times"] == 1 and seen["members"] == 3 and seen["model"] == "xdiffsr-default"


def test_cli_sampler_options_are_generated_from_the_settings(capsys):
    """Names, types, defaults, help and validation of the sampler options come from
    :class:`xdiffsr.SamplerSettings`; an experiment command's defaults are its driver's."""
    import argparse
    import dataclasses
    import inspect

    from xdiffsr.__main__ import _SUPER_RESOLVE, _add_sampler
    from xdiffsr.evaluation.suite import evaluate

    p = argparse.ArgumentParser()
    _add_sampler(p, names=_SUPER_RESOLVE)
    args = p.parse_args([])
    default = xdiffsr.SamplerSettings()
    assert {n: getattr(args, n) for n in _SUPER_RESOLVE} == {
        n: getattr(default, n) for n in _SUPER_RESOLVE}
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(xdiffsr.SamplerSettings)}
    for action in p._actions[1:]:
        assert action.help == helps[action.dest]
        assert action.option_strings == ["--" + action.dest.replace("_", "-")]
    assert p.parse_args(["--mmps-sigmas", "none"]).mmps_sigmas is None
    assert p.parse_args(["--mmps-sigmas", "2,8"]).mmps_sigmas == (2.0, 8.0)
    assert p.parse_args(["--batch-size", "none", "--seed", "7"]).batch_size is None
    for bad, message in [("--cg-iters=0", "cg_iters=0 must be an integer >= 1"),
                         ("--mmps-sigmas=8,2", "mmps_sigmas=(8.0, 2.0) must be a pair"),
                         ("--lambda-g=-1", "lambda_g=-1.0 must be >= 0")]:
        with pytest.raises(SystemExit):
            p.parse_args([bad])
        assert message in capsys.readouterr().err
    e = argparse.ArgumentParser()
    _add_sampler(e, evaluate)
    assert e.parse_args([]).members == inspect.signature(evaluate).parameters["members"].default

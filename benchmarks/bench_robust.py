"""Robust guidance (issue 12): dense observations with the default settings and the alternatives.

Two parts, each printing a table:

- ``--part analytic`` (CPU, ~1-2 min): the 256-dimensional Gaussian prior of
  ``tests/test_accessor.py`` (8 x 16 grid, t850 and z500, exact denoiser) with dense observations
  (a 16 x 32 t850 grid, 4 values per model cell, error 1 K; 512 z500 points, 4 per cell, error
  98 m2 s-2); errors of the ensemble mean relative to the prior-to-posterior distance and the
  spread ratio, against the exact posterior of the same likelihood (raw or super-observations).
- ``--part era5`` (the default model ``xdiffsr.load_model("default")``, 64 x 128): every ERA5 /
  ERA-Interim sample of ``../shared/data/era5`` as an observation source (the matching model
  variable) with default settings and the alternatives: finite members, RMS misfit to the
  observations of the ensemble mean against the prior mean's.

Run: ``nice python benchmarks/bench_robust.py --part analytic`` and
``nice python benchmarks/bench_robust.py --part era5 --members 2 --steps 8``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xdiffsr
from tests.conftest import SHARED_DATA
from tests.test_accessor import LAT, LON, _covariance, _mean_ds
from xdiffsr.errors import DivergenceError
from xdiffsr.observations.sources import as_source

T0 = pd.Timestamp("2021-01-01")
CONFIGS = {
    "default": {},
    "mmps, cg_iters=10": {"guidance": "mmps", "cg_iters": 10},
    "sda (paper, Alg. 1)": {"guidance": "sda"},
    "sda, clip=1": {"guidance": "sda", "clip": 1.0},
    "mmps, cg_iters=2": {"guidance": "mmps", "cg_iters": 2},
    "jf (Jacobian-free)": {"guidance": "jf"},
    "none": {"guidance": "none"},
}


def dense_sources(f: int = 2, per_cell: int = 4, seed: int = 0) -> dict[str, list]:
    """Truth-based dense observations on the analytic problem, raw and super-observed: a t850
    grid ``f`` times finer than the model (``f^2`` values per cell, error 1 K) and ``per_cell``
    z500 points per model cell (error 98 m2 s-2)."""
    g = np.random.default_rng(seed)
    K = _covariance()
    mu = np.stack([_mean_ds()[v].values for v in ("t850", "z500")]).ravel()
    truth = (mu + np.linalg.cholesky(K + 1e-6 * np.eye(256)) @ g.normal(size=256)).reshape(2, 8, 16)
    d = 22.5 / f
    flat, flon = -90 + d * (np.arange(8 * f) + 0.5), -11.25 + d * (np.arange(16 * f) + 0.5)
    fine = np.repeat(np.repeat(truth[0], f, axis=0), f, axis=1)
    fine = fine + g.normal(0, 1.0, fine.shape)
    grid = xr.Dataset(
        {"t850": (("time", "lat", "lon"), fine[None], {"units": "K"})},
        coords={
            "time": [T0],
            "lat": ("lat", flat, {"units": "degrees_north"}),
            "lon": ("lon", flon, {"units": "degrees_east"}),
        },
    )
    n = 128 * per_cell
    i, j = np.repeat(np.arange(8), 16 * per_cell), np.tile(np.repeat(np.arange(16), per_cell), 8)
    lat = LAT[i] + g.uniform(-1, 1, n)  # near the centres: bilinear ~ selection
    lon = LON[j] + g.uniform(-1, 1, n)
    pts = pd.DataFrame(
        {"time": T0, "lat": lat, "lon": np.mod(lon, 360), "variable": "z500",
         "value": truth[1, i, j] + g.normal(0, 98.0665, n), "units": "m2 s-2"}
    )
    gl, pl = f"grid {f * f}/cell", f"points {per_cell}/cell"
    return {
        gl: [xdiffsr.GridObservations(grid, superobs=False)],
        f"{gl}, super-obs": [grid],
        pl: [pts],
        f"{pl}, super-obs": [xdiffsr.PointObservations(pts, superobs=True)],
    }


def exact_posterior(prior, sources) -> tuple[np.ndarray, np.ndarray]:
    """Dense optimal interpolation with the blocks the sampler sees."""
    blocks = [as_source(s, prior).at_time(np.datetime64(T0), prior) for s in sources]
    A = np.vstack([b.matrix.toarray() for b in blocks])
    y = np.concatenate([b.y for b in blocks])
    R = np.concatenate([b.variance for b in blocks])
    mu = np.stack([_mean_ds()[v].values for v in ("t850", "z500")]).ravel()
    K = _covariance() + 1e-6 * np.eye(256)
    P = np.linalg.inv(np.linalg.inv(K) + A.T @ (A / R[:, None]))  # information form: many obs
    mean = mu + P @ (A.T @ ((y - A @ mu) / R))
    return mean.reshape(2, 8, 16), np.diag(P).reshape(2, 8, 16)


def analytic(members: int, steps: int, f: int, per_cell: int) -> None:
    prior = xdiffsr.GaussianPrior(_mean_ds(), _covariance())
    mu = np.stack([_mean_ds()[v].values for v in ("t850", "z500")])
    s = np.array([5.0, 400.0])[:, None, None]
    print("| observations | guidance | mean error | spread ratio | finite | s |")
    print("|---|---|---:|---:|---|---:|")
    for label, srcs in dense_sources(f, per_cell).items():
        mean, var = exact_posterior(prior, srcs)
        for name, opts in CONFIGS.items():
            t = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = xr.Dataset(coords={"time": [T0]}).diffsr.super_resolve(
                        srcs, model=prior, members=members, steps=steps, **opts
                    )
                x = np.stack([out[v].values[0] for v in ("t850", "z500")], axis=1) / s
            except DivergenceError:  # non-finite: the sampler refuses to return it
                x = np.full((members, 2, *prior.grid.shape), np.nan)
            fin = bool(np.isfinite(x).all())
            err = np.linalg.norm(np.nanmean(x, 0) - mean / s) / np.linalg.norm((mean - mu) / s)
            spread = np.sqrt(np.nanmean(np.nanvar(x, 0)) / np.mean(var / s**2))
            print(f"| {label} | {name} | {err:.3f} | {spread:.2f} | {fin} | "
                  f"{time.perf_counter() - t:.1f} |")


ERA5_CASES = {
    # label: (file, variable in file, selection, model variable)
    "ERA5 ens 3 deg, t 850 hPa": (
        "era5_ens10_3deg_z_t_2017-01.nc", "t", {"isobaricInhPa": 850, "number": 0}, "t850"),
    "ERA5 ens 3 deg, z 500 hPa": (
        "era5_ens10_3deg_z_t_2017-01.nc", "z", {"isobaricInhPa": 500, "number": 0}, "z500"),
    "ERA-Interim 0.75 deg, z 500 hPa": (
        "eraint_monthly_uvz_0.75deg.nc", "z", {"level": 500}, "z500"),
    "ERA-Interim 0.75 deg, u 200 hPa as u250": (
        "eraint_monthly_uvz_0.75deg.nc", "u", {"level": 200}, "u250"),
    "ERA5 1 deg (zarr), first variable": ("era5_global_1deg_2026-03.zarr", None, {}, None),
    "ERA5 UK 0.25 deg, t2m as t850": ("era5_t2m_hourly_2019-03_uk_0.25deg.nc", "t2m", {}, "t850"),
}


ERA5_CONFIGS = ("default", "mmps, cg_iters=2", "jf (Jacobian-free)", "sda (paper, Alg. 1)",
                "sda, clip=1")


def era5_field(file: str, var, sel: dict, target):
    """One time of one variable of a shared sample, renamed to a model variable."""
    path = SHARED_DATA / "era5" / file
    ds = xr.open_zarr(path) if file.endswith(".zarr") else xr.open_dataset(path)
    if var is None:  # the zarr: pick a model variable it has, or t at 850 hPa
        names = [v for v in ds.data_vars if ds[v].ndim >= 2]
        var = next((v for v in names if v in ("t850", "z500", "t", "z", "t2m")), names[0])
        target = {"t": "t850", "z": "z500", "t2m": "t850"}.get(var, var)
        level = [d for d in ds[var].dims if "lev" in d or "isobaric" in d or d == "pressure"]
        if level:
            sel = {level[0]: 850 if var == "t" else 500}
    da = ds[var]
    for k, v in sel.items():
        da = da.sel({k: v}, method="nearest") if k in da.dims else da
    t = np.datetime64("2021-01-01T00")
    for d in [d for d in da.dims if d not in ("latitude", "longitude")]:  # time, month, ...
        if np.issubdtype(da[d].dtype, np.datetime64):
            t = da[d].values[0]
        da = da.isel({d: 0})
    da = da.squeeze(drop=True).drop_vars([c for c in da.coords if c not in da.dims])
    return da.to_dataset(name=target).expand_dims(time=[t]), target, pd.Timestamp(t)


def era5(members: int, steps: int) -> None:
    model = xdiffsr.load_model("default")
    print("| source | values | guidance | finite | misfit ens. mean | misfit prior mean | s |")
    print("|---|---:|---|---|---:|---:|---:|")
    for label, (file, var, sel, target) in ERA5_CASES.items():
        ds, target, t = era5_field(file, var, sel, target)
        src = as_source(ds, model)
        block = src.at_time(np.datetime64(t), model)
        c = model.variables.index(target)
        prior_state = np.broadcast_to(model.center[:, None, None], model.state_shape)
        misfit_prior = _misfit(block, prior_state, model)
        runs = [(name, src, CONFIGS[name]) for name in ERA5_CONFIGS]
        if src.superobs:  # the case: every value, the paper's guidance
            raw = xdiffsr.GridObservations(ds, superobs=False)
            runs.append(("sda, every value (no super-obs)", raw, {"guidance": "sda"}))
        for name, source, opts in runs:
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = xr.Dataset(coords={"time": [t]}).diffsr.super_resolve(
                        [source], model=model, members=members, steps=steps, seed=0, **opts
                    )
                x = np.stack([out[v].values[0] for v in model.variables], axis=1)
            except DivergenceError:  # non-finite: the sampler refuses to return it
                x = np.full((members, len(model.variables), *model.grid.shape), np.nan)
            fin = bool(np.isfinite(x[:, c]).all())
            mis = _misfit(block, np.nanmean(x, 0), model) if fin else float("nan")
            print(f"| {label} ({src.describe()}) | {block.n_obs} | {name} | {fin} | {mis:.3g} | "
                  f"{misfit_prior:.3g} | {time.perf_counter() - t0:.0f} |")


def _misfit(block, state: np.ndarray, model) -> float:
    """RMS of ``y - M x`` over the source's (super-)observations, x physical (C, H, W)."""
    del model
    return float(np.sqrt(np.mean((block.y - block.matrix @ state.ravel()) ** 2)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["analytic", "era5"], default="analytic")
    p.add_argument("--members", type=int, default=None)
    p.add_argument("--steps", type=int, default=18)
    p.add_argument("--refine", type=int, default=8, help="analytic: grid refinement factor")
    p.add_argument("--per-cell", type=int, default=16, help="analytic: z500 points per cell")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.part == "analytic":
        analytic(a.members or 128, a.steps, a.refine, a.per_cell)
    else:
        era5(a.members or 2, a.steps)


if __name__ == "__main__":
    main()

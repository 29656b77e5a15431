"""``xdiffsr demo``: the whole chain, offline, on the packaged default model and held-out state.

A held-out state of the OSSE nature run (shipped with the package) is observed twice: coarsely
(conservative 11.25-degree cells, as the paper's low-resolution data: the 16 x 32 grid of
:data:`xdiffsr.osse.COARSE_GRID`, longitudes 0, 11.25, ..., 348.75, the grid ``xdiffsr evaluate``
uses) and by simulated radiosondes at real IGRA station locations. Both carry Gaussian errors of
the standard deviations the assimilation assumes for them (the nominal error table,
:func:`xdiffsr.observations.default_error_std`), so the demo's innovation chi-squares are those of
a right error model (about 1) rather than of error-free data. An ensemble is super-resolved
from both with the default model; its RMSE against the truth is printed next to bicubic
interpolation of the coarse field, and the ensemble (netCDF) and a figure are written.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.evaluation import plot
from xdiffsr.evaluation.datasets import HELDOUT, STATIONS, coarse_grid, load_heldout, load_stations
from xdiffsr.evaluation.metrics import rmse
from xdiffsr.evaluation.scores import resolve_model
from xdiffsr.grid import find_latlon
from xdiffsr.models import Prior
from xdiffsr.observations import default_error_std
from xdiffsr.osse import COARSE_GRID, coarsen
from xdiffsr.osse.stations import simulate_soundings
from xdiffsr.reconstruct.settings import SamplerSettings
from xdiffsr.regrid import Regridder

_DEFAULT = SamplerSettings()

__all__ = [
    "HELDOUT",
    "STATIONS",
    "coarse_grid",
    "load_heldout",
    "load_stations",
    "observe",
    "run_demo",
]


def run_demo(
    *,
    model="default",
    truth: xr.Dataset | None = None,
    stations: pd.DataFrame | None = None,
    out: str | Path = "xdiffsr-demo",
    members: int = 4,
    steps: int = _DEFAULT.steps,
    guidance: str = _DEFAULT.guidance,
    cg_iters: int = 2,
    mmps_sigmas: tuple[float, float] | None = _DEFAULT.mmps_sigmas,
    device=None,
    seed: int = 0,
    figure: bool = True,
    verbose: bool = True,
) -> pd.DataFrame:
    """Observe a held-out state, super-resolve it, and score the ensemble mean against bicubic.

    Parameters
    ----------
    model : str, path or Prior
        ``"default"`` (the packaged model), a registry name, a file, or a prior object.
    truth : Dataset, optional
        State(s) to reconstruct; default: the first state of :func:`load_heldout`.
    stations : DataFrame, optional
        Station locations (columns id, lat, lon); default: :func:`load_stations`.
    out : path
        Folder for ``ensemble.nc`` and ``demo.png``.
    members, steps, guidance, cg_iters, mmps_sigmas, device, seed
        Passed to :func:`xdiffsr.super_resolve`. The defaults are the sampler's
        (:class:`~xdiffsr.SamplerSettings`: 15 noise levels, Jacobian-free moment matching
        with MMPS at one of them)
        with 4 members, under a minute on 2 CPU cores.
    figure : bool
        Write ``demo.png`` (needs matplotlib; skipped with a message otherwise).
    verbose : bool
        Show a progress bar over the sampler steps while sampling, and print the scores.

    Returns
    -------
    DataFrame
        Latitude-weighted RMSE per variable: ensemble mean, bicubic, and the ensemble spread.
    """
    t0 = time.perf_counter()
    prior = resolve_model(model)
    truth = load_heldout().isel(time=[0]) if truth is None else truth
    truth = truth[[v for v in prior.variables if v in truth.data_vars]]
    stations = load_stations() if stations is None else stations
    coarse, sondes = observe(truth, stations, seed=seed)
    ens = truth.drop_vars(list(truth.data_vars)).diffsr.super_resolve(
        [sondes, coarse],
        model=prior,
        members=members,
        steps=steps,
        guidance=guidance,
        device=device,
        seed=seed,
        cg_iters=cg_iters,
        mmps_sigmas=mmps_sigmas,
        progress=verbose,  # a progress bar over the sampler steps while it works
    )
    bicubic = Regridder(coarse_grid(), truth, method="bicubic")(coarse)
    table = _score(prior, truth, ens, bicubic)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ens.to_netcdf(out / "ensemble.nc")
    if figure:
        _figure(truth, ens, bicubic, out / "demo.png", verbose=verbose)
    if verbose:
        n_sondes = sondes["station"].nunique()
        print(
            f"xdiffsr demo: model {prior.name!r}, {members} members, {steps} steps, "
            f"{n_sondes} radiosondes + 16x32 coarse field, "
            f"{time.perf_counter() - t0:.1f} s"
        )
        print(table.to_string(float_format=lambda x: f"{x:.3g}"))
        print(f"wrote {out / 'ensemble.nc'}" + (f" and {out / 'demo.png'}" if figure else ""))
    return table


def observe(
    truth: xr.Dataset, stations: pd.DataFrame, *, seed: int = 0, coarse_errors: bool = True
) -> tuple[xr.Dataset, pd.DataFrame]:
    """The demo's two observations of ``truth``: a coarse field and simulated radiosondes.

    Parameters
    ----------
    truth : Dataset
        Model variables on (time, lat, lon).
    stations : DataFrame
        Station locations for :func:`xdiffsr.osse.stations.simulate_soundings` (which adds the
        nominal radiosonde errors).
    seed : int
        Seed of both observations' errors (independent streams).
    coarse_errors : bool, default True
        Add Gaussian errors of std :func:`~xdiffsr.observations.default_error_std` (what
        ``super_resolve`` assumes for a coarse field without ``sigma_y``) to each coarse value;
        False gives the exact conservative average, the paper's low-resolution data and the
        ``LR`` source of ``xdiffsr evaluate``. Error-free data assimilated with the nominal
        errors read an innovation chi-square well below 1 (and the sampler warns below 0.25).

    Returns
    -------
    coarse : Dataset
        ``truth`` averaged conservatively on :func:`coarse_grid` (the paper's 16 x 32 grid, as in
        ``xdiffsr evaluate``), plus errors when ``coarse_errors``.
    sondes : DataFrame
        Simulated soundings in the schema of :func:`xdiffsr.io.igra.read_igra`.
    """
    coarse = coarsen(truth, *COARSE_GRID)
    if coarse_errors:
        rng = np.random.default_rng([int(seed), 1])  # not the soundings' stream
        coarse = coarse.copy()
        for v in coarse.data_vars:
            da = coarse[v]
            noise = rng.standard_normal(da.shape) * default_error_std(str(v))
            coarse[v] = da.copy(data=(np.asarray(da) + noise).astype(da.dtype))  # keeps attrs
    return coarse, simulate_soundings(truth, stations, seed=seed)


def _score(prior: Prior, truth: xr.Dataset, ens: xr.Dataset, bicubic: xr.Dataset) -> pd.DataFrame:
    lat, lon = find_latlon(truth, "truth")
    dims = ("time", lat.dims[0], lon.dims[0])
    rows = []
    for v in prior.variables:
        if v not in truth:
            continue
        rows.append(
            {
                "variable": v,
                "units": prior.units.get(v, ""),
                "ensemble_mean": float(rmse(ens[v], truth[v], dims=dims)),
                "bicubic": float(rmse(bicubic[v], truth[v], dims=dims)),
                "spread": float(np.sqrt((ens[v].var("member")).mean())),
            }
        )
    return pd.DataFrame(rows).set_index("variable")


def _figure(
    truth: xr.Dataset,
    ens: xr.Dataset,
    bicubic: xr.Dataset,
    path: Path,
    *,
    var: str | None = None,
    verbose: bool = True,
    projection=None,
) -> None:
    """Write the demo's maps with :func:`xdiffsr.evaluation.plot.maps` (its conventions).

    The OSSE planet has flat orography and no land-sea contrast, so coastlines would be
    decorative: the demo draws on plain longitude-latitude axes (``projection=None``) whether
    or not cartopy is installed.
    """
    var = var or ("t850" if "t850" in ens else next(iter(ens.data_vars)))
    try:
        fig = plot.maps(
            truth,
            ens,
            var,
            baselines={"bicubic from 16x32": bicubic},
            ncols=5,
            projection=projection,
        )
    except ImportError:
        if verbose:
            print("matplotlib is not installed: no figure (pip install 'xdiffsr[plot]')")
        return
    fig.savefig(path, dpi=80)

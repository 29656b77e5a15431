"""How good is a diffusion prior? Its denoiser, its samples and the posteriors it gives.

The report that runs whenever a default model is retrained (its tables go in the model card):

* **denoiser roughness by noise level**: ``D(x + sigma n; sigma)`` on held-out truth, in the
  model's normalised units; roughness is the standard deviation of the second difference along
  longitude over ``|lat| <= 60``, relative to the truth's. A denoiser's output is a posterior
  mean, so at ``sigma >= 0.3`` it must be *smoother* than the truth (ratio < 1); a ratio above 1
  means noise passes through. Also the denoising error (RMSE against the truth);
* **zonal power at high wavenumbers** (20-42 on the 128-longitude grid) of unguided and guided
  members against the truth's (:func:`high_wavenumber_ratio`);
* **edge rows**: RMSE and spread at the outermost latitude rows over those of rows 3-5 from
  the same edge (:func:`edge_ratios`; a prior with artefacts at the poles has ratios >> 1);
* **climate** of the unguided members (:func:`climate`): 250-hPa jets, equator-to-pole t850
  difference, global-mean surface pressure, against the truth's;
* for guided members, **spread/skill** with the finite-ensemble adjustment and the ensemble
  mean's RMSE over that of bicubic interpolation (:func:`guided_scores`).

References
----------
.. [1] Karras et al. (2022), Sect. 4 (stochastic churn corrects a denoiser's error).
.. [2] Fortin et al. (2014), Eq. 8 (finite-ensemble spread/skill).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from xdiffsr.errors import ArgumentError
from xdiffsr.evaluation.baselines import interpolation_baseline, unguided_baseline
from xdiffsr.evaluation.datasets import load_heldout, load_stations
from xdiffsr.evaluation.metrics import (
    crps_ensemble,
    latitude_weights,
    rmse,
    spread_skill_ratio,
    zonal_spectrum,
)
from xdiffsr.models import load_model
from xdiffsr.models.prior import Prior
from xdiffsr.osse import COARSE_GRID, coarsen
from xdiffsr.osse.stations import simulate_soundings
from xdiffsr.reconstruct import super_resolve
from xdiffsr.reconstruct.sample import projection_of
from xdiffsr.reconstruct.settings import SamplerSettings

__all__ = ["REPORT_SIGMAS", "REPORT_VARIABLES", "PriorReport", "climate", "denoiser_roughness",
           "edge_ratios", "guided_scores", "high_wavenumber_ratio", "igra_lr_members",
           "prior_report", "roughness", "write_prior_report"]

#: Noise levels of the denoiser table (normalised units).
REPORT_SIGMAS = (0.02, 0.1, 0.3, 1.0, 3.0)
#: Variables of the report's tables (those of the model that are present are used).
REPORT_VARIABLES = ("t850", "t250", "u500", "v500", "z500", "z250", "sp")


def roughness(field: np.ndarray, lat: np.ndarray, max_abs_lat: float = 60.0) -> float:
    """Std of the periodic second difference along longitude (last axis) over ``|lat| <= max``.

    ``field`` (..., lat, lon); the mean over everything else is taken.
    """
    rows = np.abs(np.asarray(lat)) <= max_abs_lat
    d2 = np.roll(field, 1, -1) - 2 * field + np.roll(field, -1, -1)
    return float(np.std(d2[..., rows, :]))


def _state(prior: Prior, truth: xr.Dataset) -> np.ndarray:
    """(time, C, H, W) of ``truth`` on the prior's grid, in its order (ArgumentError if not)."""
    for axis in ("lat", "lon"):
        have, want = np.asarray(truth[axis]), np.asarray(getattr(prior.grid, axis))
        if have.shape != want.shape or not np.allclose(have, want, atol=1e-6):
            raise ArgumentError(f"truth: its {axis} ({have.size} values) is not the model's grid "
                                f"({want.size} values from {want[0]:g}); regrid it first.")
    return np.stack([truth[v].transpose("time", "lat", "lon").values
                     for v in prior.variables], axis=1)


def _variables(prior: Prior, variables: Sequence[str]) -> list[str]:
    found = [v for v in variables if v in prior.variables]
    if not found:
        raise ArgumentError(f"variables: none of {list(variables)} is a variable of the model "
                            f"{list(prior.variables)}.")
    return found


@torch.no_grad()
def denoiser_roughness(prior: Prior, truth: xr.Dataset, *, sigmas: Sequence[float] = REPORT_SIGMAS,
                       variables: Sequence[str] = REPORT_VARIABLES, seed: int = 0,
                       device: str | torch.device = "cpu",
                       zonal_truncation: int | None = None) -> pd.DataFrame:
    """Roughness and error of the denoiser's output on noisy held-out truth.

    Parameters
    ----------
    prior : Prior
        A diffusion prior (``prior.denoiser``, normalised units).
    truth : Dataset
        Held-out states (time, lat, lon) on the prior's grid.
    sigmas : sequence of float
        Noise levels (normalised units).
    zonal_truncation : int, optional
        The band limit of the denoiser the sampler uses (None: the prior's own; 0: none;
        :class:`~xdiffsr.SamplerSettings`).

    Returns
    -------
    DataFrame
        Index (sigma, variable); columns ``roughness_ratio`` (output over truth) and ``rmse``
        (normalised units) of ``D(x + sigma n; sigma)`` against ``x``.
    """
    names = _variables(prior, variables)
    x = torch.as_tensor(prior.normalise(_state(prior, truth)), dtype=torch.float32, device=device)
    den = prior.denoiser(device)
    lat = np.asarray(prior.grid.lat)
    project = projection_of(prior, SamplerSettings(zonal_truncation=zonal_truncation))
    gen = torch.Generator(device).manual_seed(seed)
    idx = [prior.variables.index(v) for v in names]
    truth_r = {v: roughness(x[:, i].cpu().numpy(), lat) for v, i in zip(names, idx, strict=True)}
    rows = []
    for s in sigmas:
        noisy = x + s * torch.randn(x.shape, generator=gen, device=device)
        sig = torch.full((x.shape[0], 1, 1, 1), float(s), device=device)
        d = den(noisy, sig).float()
        d = (d if project is None else project(d)).cpu().numpy()
        for v, i in zip(names, idx, strict=True):
            err = np.sqrt(np.mean((d[:, i] - x[:, i].cpu().numpy()) ** 2))
            rows.append({"sigma": float(s), "variable": v,
                         "roughness_ratio": roughness(d[:, i], lat) / truth_r[v], "rmse": err})
    return pd.DataFrame(rows).set_index(["sigma", "variable"])


def high_wavenumber_ratio(members: xr.Dataset, truth: xr.Dataset, *,
                          band: tuple[int, int] = (20, 42), member_dim: str = "member",
                          variables: Sequence[str] | None = None) -> pd.Series:
    """Zonal power summed over wavenumbers ``band`` (inclusive), members over truth.

    Powers are averaged over latitude (cos-weighted), time and members before the ratio.
    """
    names = [v for v in (variables or members.data_vars) if v in truth and v in members]
    out = {}
    for v in names:
        pm = zonal_spectrum(members[v]).sel(zonal_wavenumber=slice(*band)).sum("zonal_wavenumber")
        pt = zonal_spectrum(truth[v]).sel(zonal_wavenumber=slice(*band)).sum("zonal_wavenumber")
        w = latitude_weights(truth[v]["lat"])
        num, den = float(pm.weighted(w).mean()), float(pt.weighted(w).mean())
        out[v] = num / den if den > 0 else float("nan")  # a truth without power there: no ratio
    return pd.Series(out, name=f"power_k{band[0]}-{band[1]}_ratio")


def edge_ratios(members: xr.Dataset, truth: xr.Dataset, *, member_dim: str = "member",
                inner: tuple[int, int] = (2, 5)) -> pd.DataFrame:
    """RMSE of the ensemble mean and spread at the outermost rows over rows 3-5 from each edge.

    Rows are counted from each end of the latitude axis (both poles pooled): the outermost row
    (index 0 and -1) against rows ``inner`` (default indices 2, 3, 4: the 3rd to 5th rows).
    """
    lat = members["lat"].values
    order = np.argsort(lat)
    n = lat.size
    edge = np.r_[order[0], order[n - 1]]
    mid = np.r_[order[inner[0]:inner[1]], order[n - inner[1]:n - inner[0]]]
    rows = {}
    for v in [v for v in members.data_vars if v in truth]:
        mean = members[v].mean(member_dim)
        err2 = ((mean - truth[v]) ** 2).mean([d for d in mean.dims if d != "lat"]).values
        var = members[v].var(member_dim, ddof=1)
        spr2 = var.mean([d for d in var.dims if d != "lat"]).values
        rows[v] = {"rmse_edge_ratio": np.sqrt(err2[edge].mean() / err2[mid].mean()),
                   "spread_edge_ratio": np.sqrt(spr2[edge].mean() / spr2[mid].mean())}
    return pd.DataFrame(rows).T


def climate(states: xr.Dataset, *, sample_dims: Sequence[str] = ("time", "member")) -> pd.Series:
    """Jets at 250 hPa, equator-minus-pole t850 and global-mean sp of a set of states."""
    stacked = states.stack(sample=[d for d in sample_dims if d in states.dims])
    stacked = stacked.drop_vars([c for c in ("sample", *sample_dims) if c in stacked.coords])
    out = {}
    if "u250" in states:
        u = stacked["u250"].mean(["sample", "lon"])
        for hemi, sel in (("north", u.lat > 0), ("south", u.lat < 0)):
            uh = u.where(sel, drop=True)
            out[f"jet250_{hemi}_m/s"] = float(uh.max())
            out[f"jet250_{hemi}_lat"] = abs(float(uh.lat[int(np.argmax(uh.values))]))
    if "t850" in states:
        t = stacked["t850"].mean(["sample", "lon"])
        out["t850_equator_minus_pole_K"] = float(t.where(abs(t.lat) < 10).mean()
                                                 - t.where(abs(t.lat) > 70).mean())
    if "sp" in states:
        w = latitude_weights(stacked["lat"])
        out["sp_global_mean_hPa"] = float(stacked["sp"].weighted(w).mean()) / 100.0
    return pd.Series(out)


def guided_scores(members: xr.Dataset, truth: xr.Dataset, *, bicubic: xr.Dataset | None = None,
                  member_dim: str = "member") -> pd.DataFrame:
    """Per variable: RMSE of the ensemble mean (and over bicubic's), fair CRPS, adjusted
    spread/skill."""
    rows = {}
    dims = [d for d in truth.dims if d in ("time", "lat", "lon")]
    for v in [v for v in members.data_vars if v in truth]:
        r = float(rmse(members[v].mean(member_dim), truth[v], dims=dims))
        crps = float(crps_ensemble(members[v], truth[v], member_dim=member_dim, dims=dims))
        row = {"rmse": r, "crps": crps, "spread_skill": float(spread_skill_ratio(
            members[v], truth[v], member_dim=member_dim, dims=dims,
            finite_ensemble_correction=True))}
        if bicubic is not None and v in bicubic:
            row["rmse_over_bicubic"] = r / float(rmse(bicubic[v], truth[v], dims=dims))
        rows[v] = row
    return pd.DataFrame(rows).T


def igra_lr_members(prior: Prior, truth: xr.Dataset, *, members: int = 8, seed: int = 0,
                    stations: pd.DataFrame | None = None,
                    coarse_grid: tuple[int, int] = COARSE_GRID,
                    **sampler_options: Any) -> tuple[xr.Dataset, xr.Dataset]:
    """Posterior members given simulated radiosondes and the coarse field, and bicubic.

    The OSSE's IGRA+LR configuration at weight 1 with the default error models: soundings at
    ``stations`` (default the 908 IGRA stations of 2023) simulated from ``truth`` with noise
    (seeded), the truth averaged conservatively onto ``coarse_grid``; returns the members
    (time, member, lat, lon) and the bicubic interpolation of the coarse field.
    """
    names = list(prior.variables)
    truth = truth[names].load()
    lr = coarsen(truth, *coarse_grid)
    stations = load_stations() if stations is None else stations
    sondes = simulate_soundings(truth, stations, times=truth["time"].values, seed=seed)
    ens = super_resolve(truth.drop_vars(names), [sondes, lr], [1.0, 1.0], model=prior,
                        members=members, seed=seed, **sampler_options)
    return ens, interpolation_baseline(lr, truth, method="bicubic")


@dataclasses.dataclass
class PriorReport:
    """Tables of :func:`prior_report` (DataFrames/Series) and how they were made."""

    denoiser: pd.DataFrame
    unguided: pd.DataFrame
    climate: pd.DataFrame
    guided: pd.DataFrame | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_markdown(self) -> str:
        """The report as Markdown tables (the model card's section)."""
        rough = self.denoiser["roughness_ratio"].unstack("sigma")
        err = self.denoiser["rmse"].unstack("sigma")
        parts = [f"Settings: {self.settings}", "",
                 "Denoiser roughness on held-out truth, D(x + sigma n; sigma) / truth:", "",
                 rough.to_markdown(floatfmt=".2f"), "",
                 "Denoising error (RMSE, normalised units):", "", err.to_markdown(floatfmt=".3f"),
                 "", "Unguided members:", "", self.unguided.to_markdown(floatfmt=".2f"), "",
                 "Climate (unguided members vs truth):", "",
                 self.climate.to_markdown(floatfmt=".2f")]
        if self.guided is not None:
            parts += ["", "Guided members:", "", self.guided.to_markdown(floatfmt=".2f")]
        return "\n".join(parts) + "\n"


def prior_report(prior: Prior, truth: xr.Dataset, *, members: int = 4,
                 guided: xr.Dataset | None = None, bicubic: xr.Dataset | None = None,
                 sigmas: Sequence[float] = REPORT_SIGMAS,
                 variables: Sequence[str] = REPORT_VARIABLES, seed: int = 0,
                 device: str = "cpu", **sampler_options: Any) -> PriorReport:
    """The prior-quality report of ``prior`` on held-out ``truth`` states.

    Parameters
    ----------
    prior : Prior
        The diffusion prior.
    truth : Dataset
        Held-out states (time, lat, lon) on the prior's grid, never seen in training.
    members : int
        Unguided members drawn per truth time (default sampler settings, ``sampler_options``).
    guided : Dataset, optional
        Posterior members (time, member, lat, lon) of the same truth times (e.g. radiosondes and
        a coarse field, :func:`igra_lr_members`): adds their spectra, edge rows,
        spread/skill and (with ``bicubic``, same times) RMSE over bicubic interpolation.
    bicubic : Dataset, optional
        Bicubic interpolation of the coarse field at the truth times.
    sigmas, variables, seed, device, **sampler_options
        Denoiser noise levels, variables of the tables, seed, torch device, and the settings
        of the unguided sampler (default: the library's).

    Returns
    -------
    PriorReport
        Its tables; ``to_markdown()`` for the model card.
    """
    names = _variables(prior, variables)
    truth = truth[list(prior.variables)]
    den = denoiser_roughness(prior, truth, sigmas=sigmas, variables=names, seed=seed,
                             device=device,
                             zonal_truncation=sampler_options.get("zonal_truncation"))
    sampler_options.setdefault("steps", SamplerSettings().steps)
    free = unguided_baseline(prior, truth["time"].values, members=members, seed=seed,
                             device=device, **sampler_options)
    unguided = pd.concat([high_wavenumber_ratio(free[names], truth[names]),
                          edge_ratios(free[names], truth[names])["spread_edge_ratio"]], axis=1)
    clim = pd.DataFrame({"members": climate(free), "truth": climate(truth)})
    guided_t = None
    if guided is not None:
        guided_t = pd.concat([high_wavenumber_ratio(guided[names], truth[names]),
                              edge_ratios(guided[names], truth[names]),
                              guided_scores(guided[names], truth[names], bicubic=bicubic)],
                             axis=1)
    settings = {"states": int(truth.sizes["time"]), "members": members, "seed": seed,
                "sigmas": list(map(float, sigmas)), **sampler_options}
    return PriorReport(den, unguided, clim, guided_t, settings)


def write_prior_report(model: str | Prior, truth: xr.Dataset | None, out: str | Path, *,
                       times: int | None = None, members: int = 4, seed: int = 0,
                       device: str = "cpu") -> Path:
    """Write ``OUT/prior-report.md`` for ``model`` on ``times`` evenly spread truth states.

    ``truth`` defaults to the packaged held-out states; ``model`` is a prior or what
    :func:`xdiffsr.load_model` takes (``xdiffsr evaluate --prior-report``).
    """
    truth = load_heldout() if truth is None else truth
    prior = load_model(model) if isinstance(model, str) else model
    n = truth.sizes["time"] if times is None else min(int(times), truth.sizes["time"])
    idx = np.unique(np.linspace(0, truth.sizes["time"] - 1, n).round().astype(int))
    report = prior_report(prior, truth.isel(time=idx).load(), members=members, seed=seed,
                          device=device)
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    path = path / "prior-report.md"
    path.write_text(report.to_markdown())
    return path

# %% [markdown]
# # Uncertainty and calibration: is the spread of the ensemble the size of its error?
#
# A reconstruction is an ensemble; its spread is the posterior uncertainty *only if* the prior
# and the observation-error model are right. This tutorial shows the tools that check it:
#
# * against a known truth: the spread-skill ratio with the finite-ensemble adjustment, the fair
#   CRPS and rank histograms (`xdiffsr.evaluation.ranks.rank_histogram`);
# * without a truth: the per-source diagnostics every result carries (`obs_rms`, `obs_spread`,
#   `obs_error`, `obs_chi2`), the Desroziers calibration of the error variances
#   (`xdiffsr.evaluation.calibration.calibrate`) and held-out validation
#   (`xdiffsr.evaluation.validation.withhold` / `score_withheld`).
#
# To know what the right answer is, we use a problem whose posterior is known exactly: a
# **Gaussian prior** (`xdiffsr.GaussianPrior`) on a small 16 x 32 global grid, truths drawn from
# that same prior, and point observations with a known error of 1 K. Moment-matching guidance
# with the denoiser's Jacobian (`guidance="mmps"`, converged CG) is exact for any Gaussian prior
# (the default `"jf"` only for a stationary covariance), so a correctly specified case must give a
# spread-skill ratio near 1, a chi-square near 1 and flat ranks; then we mis-specify the error
# and watch every diagnostic say so. Everything here runs in seconds: the prior is a 512 x 512
# covariance, not a network.

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

import xdiffsr
from xdiffsr.evaluation.calibration import calibrate
from xdiffsr.evaluation.metrics import crps_ensemble, rmse, spread_skill_ratio
from xdiffsr.evaluation.ranks import rank_histogram
from xdiffsr.evaluation.validation import score_withheld, withhold
from xdiffsr.regrid import point_weights

start = time.perf_counter()
rng = np.random.default_rng(0)
lat = -84.375 + 11.25 * np.arange(16)
lon = 11.25 * np.arange(32)
coords = {"lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
          "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"})}

# A smooth random field on the sphere: squared-exponential covariance of the chordal distance
# (about 2000 km correlation length), standard deviation 2 K, around a pole-to-equator gradient.
LAT, LON = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
xyz = np.stack([np.cos(LAT) * np.cos(LON), np.cos(LAT) * np.sin(LON), np.sin(LAT)], -1)
xyz = xyz.reshape(-1, 3)
chord2 = ((xyz[:, None] - xyz[None]) ** 2).sum(-1)
cov = 4.0 * np.exp(-chord2 / (2 * 0.35**2)) + 1e-3 * np.eye(lat.size * lon.size)
mean = xr.Dataset({"t850": (("lat", "lon"), 280 - 30 * np.sin(LAT) ** 2, {"units": "K"})},
                  coords=coords)
prior = xdiffsr.GaussianPrior(mean, cov, name="synthetic-gaussian")
prior

# %% [markdown]
# ## Truths and observations
#
# Twelve truths drawn from the prior (labelled six hours apart), each observed at 80 random points
# by bilinear interpolation (the operator the assimilation uses) plus noise of standard deviation
# **1 K**.

# %%
T, N_OBS, ERROR_STD = 12, 80, 1.0
times = pd.date_range("2021-01-01", periods=T, freq="6h")
draws = np.linalg.cholesky(cov) @ rng.normal(size=(cov.shape[0], T))
truth = xr.Dataset(
    {"t850": (("time", "lat", "lon"), mean.t850.values + draws.T.reshape(T, 16, 32),
              {"units": "K"})},
    coords={"time": times, **coords})
frames = []
for k, t in enumerate(times):
    plat = np.rad2deg(np.arcsin(rng.uniform(-0.97, 0.97, N_OBS)))  # uniform on the sphere
    plon = rng.uniform(0, 360, N_OBS)
    exact = point_weights(lat, lon, plat, plon, "bilinear") @ truth.t850.values[k].ravel()
    frames.append(pd.DataFrame({"time": t, "lat": plat, "lon": plon, "variable": "t850",
                                "value": exact + rng.normal(0, ERROR_STD, N_OBS), "units": "K",
                                "station": [f"P{k:02d}{i:03d}" for i in range(N_OBS)]}))
points = pd.concat(frames, ignore_index=True)
target = xr.Dataset(coords={"time": times})
points.head()

# %% [markdown]
# ## A correctly specified and a mis-specified reconstruction
#
# First we set aside 20 % of the points, chosen at random (`withhold`): they are not assimilated
# and serve below as the independent check. The kept points are assimilated; the withheld ones are
# passed as a second source **with weight 0**, which leaves the reconstruction unchanged but
# gives them the same observation-space diagnostics as the assimilated ones.
#
# `sigma_y` is the error **variance** the likelihood assumes. The right one is 1 K²; the wrong
# one, 0.1 K², claims the observations are three times more precise than they are. `cg_iters=10`
# lets the conjugate-gradient solve of moment matching converge (64 observations per time, a
# smooth prior), so the first ensemble samples the exact posterior up to the discretisation of 10
# sampler steps.
#
# `GaussianPrior` summarises its climate by one centre and one scale per variable (the mean of
# the mean field, and the average prior standard deviation, 2 K). The prior-climate check of
# `super_resolve` compares the observations with those, and the 30 K pole-to-equator gradient of
# our mean puts about 30 % of them beyond its 6 scales: a false alarm for this prior, which we
# silence.

# %%
FALSE_ALARM = dict(message=".*prior's climate", category=xdiffsr.XDiffSRWarning)
warnings.filterwarnings("ignore", **FALSE_ALARM)
kept, held_out = withhold(points, fraction=0.2, by="random", seed=1)
print(f"{len(kept)} observations assimilated, {len(held_out)} withheld")
SAMPLER = dict(members=8, steps=10, guidance="mmps", cg_iters=10, seed=0)  # exact here
cases = {"right sigma_y = 1 K2": 1.0, "wrong sigma_y = 0.1 K2": 0.1}
ensembles = {}
for name, sigma_y in cases.items():
    sources = [xdiffsr.PointObservations(kept, sigma_y=sigma_y, name="kept"),
               xdiffsr.PointObservations(held_out, sigma_y=sigma_y, name="withheld")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", xdiffsr.XDiffSRWarning)
        warnings.filterwarnings("ignore", **FALSE_ALARM)
        ensembles[name] = target.diffsr.super_resolve(sources, [1.0, 0.0], model=prior,
                                                      **SAMPLER)
    for w in caught:
        print(f"{name}: warning: {w.message}")

# %% [markdown]
# ## Scores against the truth
#
# * **Spread-skill ratio** (`spread_skill_ratio`): the ensemble spread over the RMSE of the
#   ensemble mean. With `m` members the spread is multiplied by `sqrt((m + 1) / m)` (Fortin et al.
#   2014), so that a reliable ensemble of any size has an expected ratio of 1; below 1 is
#   under-dispersion (overconfidence).
# * **Fair CRPS** (`crps_ensemble`, Ferro 2014), in K: lower is better; it rewards a sharp
#   ensemble only if it is also right.

# %%
dims = ["time", "lat", "lon"]
scores = pd.DataFrame({
    name: {"RMSE of mean (K)": float(rmse(e.t850, truth.t850, dims=dims)),
           "spread-skill": float(spread_skill_ratio(e.t850, truth.t850, dims=dims)),
           "fair CRPS (K)": float(crps_ensemble(e.t850, truth.t850, dims=dims))}
    for name, e in ensembles.items()
}).T
scores

# %% [markdown]
# ## Rank histograms
#
# At every grid point and time the truth is ranked among the 8 members (0: below all, 8: above
# all; ties broken at random). A reliable ensemble gives a flat histogram; an overconfident one
# a U shape: the truth falls outside the members too often. Neighbouring grid points are
# correlated, so the bars fluctuate more than independent counts would: judge the shape.

# %%
ranks = {name: rank_histogram(e.t850, truth.t850) for name, e in ensembles.items()}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True, layout="constrained")
for ax, (name, h) in zip(axes, ranks.items()):
    ax.bar(h["rank"], h / h.sum(), color="C0" if name.startswith("right") else "C3")
    ax.axhline(1 / h.sizes["rank"], color="k", lw=1, ls="--", label="flat")
    ax.set_xlabel("rank of the truth among 8 members")
    ax.set_title(name)
axes[0].set_ylabel("fraction of grid points and times (1)")
axes[0].legend()
plt.show()

# %% [markdown]
# ## Diagnostics without a truth: what every result carries
#
# In practice the truth is unknown. Every eager result has, per time and source, the number of
# observations, the RMS of observation minus ensemble mean (`obs_rms`), the ensemble spread at
# the observations (`obs_spread`), the assumed error (`obs_error`) and the normalised innovation
# chi-square `obs_chi2` (see `xdiffsr/reconstruct/diagnostics.py`). For a source that was not
# assimilated (weight 0: our withheld points) it is `sum d² / sum (R + v)`, with `d` the
# observation minus the ensemble mean, `R` the assumed error variance and `v` the ensemble
# variance there: about 1 when the error model and the prior are right, above 1 when the errors
# are larger than assumed. Pooled over the times:

# %%
def pooled_chi2(ens: xr.Dataset, source: int) -> float:
    """The chi-square of a source that was not assimilated, all times: sum d² / sum (R + v)."""
    e = ens.isel(source=source)
    n = e.obs_count
    return float((n * e.obs_rms**2).sum() / (n * (e.obs_error**2 + e.obs_spread**2)).sum())


chi2 = {name: pooled_chi2(e, source=1) for name, e in ensembles.items()}
print("withheld points:", {name: round(c, 2) for name, c in chi2.items()})
columns = ["obs_count", "obs_rms", "obs_spread", "obs_error", "obs_chi2"]
ensembles["right sigma_y = 1 K2"][columns].isel(time=slice(0, 2)).to_dataframe()

# %% [markdown]
# With the right error variance the withheld points give a chi-square near 1; with the wrong one
# it is several times larger: the ensemble is far more confident than its distance to
# independent data allows.
#
# The chi-square of the *assimilated* points (source `kept`) uses `sum d² / sum (R - v)`
# instead, since the ensemble was pulled towards them. It is a weaker check: when the spread at
# the observations is close to the assumed error the denominator is small and the value sensitive
# to any error in the spread, and the mean of a finite ensemble adds `v / members` to `d²`; with
# 8 members and a spread near 0.8 K it is clearly above 1 here even for the right `sigma_y`. In
# the wrong case the spread exceeds the assumed error, the chi-square of the assimilated points
# is undetermined and reported as NaN. Withheld observations are the reliable test.
#
# ## Fitting the error variance from the data: Desroziers calibration
#
# `calibrate` reconstructs the period once without guidance (the prior mean) and then with the
# sources, and rescales each source's error variance by `mean(d_a d_b) / mean(R)` (Desroziers et
# al. 2005) until the factor settles. Starting from the wrong 0.1 K², it should move towards the
# true 1 K². Convergence is slow when observations are much more precise than the prior at their
# positions, so we allow four iterations on six of the times.

# %%
t0 = time.perf_counter()
fitted, history = calibrate(target.isel(time=slice(0, 6)),
                            [xdiffsr.PointObservations(points, sigma_y=0.1)], prior,
                            iterations=4, **SAMPLER)
sigma_fitted = fitted[0].sigma_y["t850"]
print(f"calibrated in {time.perf_counter() - t0:.1f} s: sigma_y 0.1 -> {sigma_fitted:.2f} K2 "
      f"(true {ERROR_STD**2:.1f})")
history

# %% [markdown]
# ## Held-out validation
#
# The withheld points also give scores (`score_withheld`: the ensemble interpolated to them).
# Those scores include the observation error: a perfect ensemble has an RMSE of 1 K there. The
# spread-skill ratio printed is members against withheld values, so it is below 1 even for the
# right `sigma_y` (the 1 K noise is in the error, not in the spread); compare the two cases.

# %%
validation = pd.concat([score_withheld(e, held_out).assign(case=name)
                        for name, e in ensembles.items()])
validation = validation.pivot(index="case", columns="metric", values="value")
validation

# %%
print(f"total {time.perf_counter() - start:.0f} s (information only; it varies with the load)")

# %% [markdown]
# ## What these numbers say
#
# With the right error variance the (nearly exact) Gaussian posterior is reliable, as theory says
# it must be: spread-skill near 1, flat ranks, a chi-square near 1 at the withheld points.
# Claiming the observations are three times more precise than they are makes the ensemble
# overconfident: it is pulled onto noisy values, its spread shrinks, the ranks form a U, the
# chi-square at the withheld points rises well above 1, and they see a larger error. The
# chi-square and the held-out scores need no truth, which is why every result carries the first
# and `withhold` exists for the second; `calibrate` then turns the innovation statistics into a
# better `sigma_y`.
#
# A trained diffusion prior is not exactly Gaussian and not exactly right, so the same checks on
# real reconstructions mix prior errors with observation errors: a chi-square far from 1 says
# *something* is mis-specified, not which part. The default model's ensembles are not calibrated
# everywhere ([limitations](../limitations.md)).

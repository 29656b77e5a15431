# %% [markdown]
# # Real IGRA v2 radiosonde files to observations
#
# NOAA's Integrated Global Radiosonde Archive (IGRA v2) distributes one fixed-width text file per
# station. In this tutorial you will
#
# 1. read real station files (Vienna Hohe Warte, 2015; Utqiagvik/Barrow, 2010, a truncated
#    download) with `xdiffsr.io.read_igra`, select times and look at the quality-control flags;
# 2. turn a sounding into observations on the model's pressure levels with
#    `xdiffsr.observations.vertical.soundings_to_observations` and look at the tidy frame;
# 3. map the stations of the IGRA station list;
# 4. pass the sounding to `super_resolve` with the default model at the sounding's time.
#
# The files are the workspace's real-data samples in `shared/data/igra/` (beside the repository),
# found by walking up from the current folder, as `docs/conf.py` and `tests/conftest.py` do. The
# default model is trained on a *simulated* (Held-Suarez) climate, not on the real atmosphere, so
# step 4 shows the mechanics, not a real-world analysis (see the [model card](../model-card.md)).

# %%
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import xarray as xr

import xdiffsr
from xdiffsr.io import read_igra, read_station_list
from xdiffsr.observations.vertical import soundings_to_observations
from xdiffsr.osse.stations import active_stations

start = time.perf_counter()
IGRA = next(p / "shared" / "data" / "igra" for p in (Path.cwd(), *Path.cwd().parents)
            if (p / "shared" / "data" / "igra").is_dir())
sorted(f.name for f in IGRA.iterdir())

# %% [markdown]
# ## Reading station files
#
# `read_igra` returns one row per reported level, with SI units (Pa, K, m, m/s) and `u`, `v`
# derived from the reported direction and speed. `start`/`end` select nominal times (inclusive).
# The gzip file is read directly.

# %%
vienna = read_igra(IGRA / "AUM00011035-data.txt.gz", start="2015-03-01", end="2015-03-31")
print(f"{vienna.sounding.nunique()} soundings, {len(vienna)} levels, "
      f"{vienna.time.min()} to {vienna.time.max()}")
vienna.head()

# %% [markdown]
# The Barrow sample ends with a header announcing 147 levels and none following, as interrupted
# downloads do. The reader validates every record, keeps the complete soundings and reports the
# broken one (a warning, and `attrs["igra_problems"]`) instead of misreading the file:

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    barrow = read_igra(IGRA / "USM00070026-data.txt")
print(f"{barrow.sounding.nunique()} complete soundings kept; {len(caught)} warning(s)")
barrow.attrs["igra_problems"]

# %% [markdown]
# ## Quality-control flags
#
# Each level carries IGRA's flags for pressure, height and temperature (`''` not checked, `A`
# passed the tier-1 climatology check, `B` tier-1 and tier-2), and `qc_removed`, a bit mask of
# values IGRA removed (they are NaN here). A conservative selection keeps temperatures that
# passed a check:

# %%
print(vienna.tflag.value_counts().rename("temperature flag").to_string())
print(f"values removed by IGRA QC on {int((vienna.qc_removed > 0).sum())} levels")
checked = vienna[vienna.tflag.isin(["A", "B"]) | vienna.temperature.isna()]
print(f"{len(checked)} of {len(vienna)} levels kept after the temperature-flag check")

# %% [markdown]
# ## One sounding on the model's levels
#
# Take the 12 UTC sounding of 15 March 2015. `soundings_to_observations` interpolates each
# sounding linearly in log-pressure to the model's pressure levels (never extrapolating) and
# attaches the nominal error standard deviations (1 K, 2 m/s, 10 gpm; set your own with
# `errors=`). The values are in the model's units (K, m/s, geopotential in m²/s²), stated in the
# `units` column. The result is the tidy observation frame `super_resolve` takes.

# %%
model = xdiffsr.load_model("default")
t_obs = pd.Timestamp("2015-03-15T12")
sounding = checked[checked.time == t_obs]
obs = soundings_to_observations(sounding, model.variables)
print(f"sounding: {len(sounding)} levels -> {len(obs)} observations of the model's variables")
obs

# %%
fig, ax = plt.subplots(figsize=(4.5, 5), layout="constrained")
ax.plot(sounding.temperature, sounding.pressure / 100, ".-", ms=3, label="reported levels")
t_obs_levels = obs[obs.variable.str.startswith("t")]
ax.plot(t_obs_levels.value, [int(v[1:]) for v in t_obs_levels.variable], "o", ms=8,
        label="model levels (interpolated)")
ax.set_yscale("log")
ax.set_ylim(1050, 100)
ax.set_yticks([1000, 850, 500, 250, 100], ["1000", "850", "500", "250", "100"])
ax.set_xlabel("temperature (K)")
ax.set_ylabel("pressure (hPa)")
ax.set_title(f"Vienna, {t_obs:%Y-%m-%d %H} UTC")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Where the stations are
#
# `read_station_list` reads NOAA's station list; `active_stations(..., year)` keeps the fixed
# stations whose record covers a year (the network the OSSE tutorials simulate).

# %%
station_list = read_station_list(IGRA / "igra2-station-list-v2.2.txt")
active = active_stations(station_list, 2015)
files = pd.concat([vienna, barrow]).groupby("station")[["lat", "lon"]].first()
fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
ax.scatter(active.lon, active.lat, s=4, color="0.6", label=f"active in 2015 ({len(active)})")
ax.scatter(files.lon, files.lat, s=60, color="C3", marker="*", label="the files read here")
for sid, row in files.iterrows():
    ax.annotate(sid, (row.lon, row.lat), xytext=(4, 4), textcoords="offset points", fontsize=8)
ax.set_xlim(-180, 180)
ax.set_ylim(-90, 90)
ax.set_xlabel("longitude (°E)")
ax.set_ylabel("latitude (°N)")
ax.set_title("IGRA v2 radiosonde stations")
ax.legend(loc="lower left", fontsize=8)
plt.show()

# %% [markdown]
# ## Into `super_resolve`
#
# The tidy frame (or the raw level frame of `read_igra`, which `super_resolve` converts itself)
# is a source like any other. Here a single sounding constrains the default model at the
# sounding's time: **3 members, 6 sampler steps** to keep the notebook fast (about 1 s per member
# and step on 2 CPU cores). One station can only inform its surroundings: far from Vienna the
# members are samples of the model's climate.

# %%
t0 = time.perf_counter()
ens = xr.Dataset(coords={"time": [t_obs]}).diffsr.super_resolve(
    [obs], model=model, members=3, steps=6, seed=0)
print(f"{time.perf_counter() - t0:.1f} s")
ens[["obs_count", "obs_rms", "obs_spread", "obs_error", "obs_chi2"]].isel(time=0).to_dataframe()

# %% [markdown]
# The ensemble spread of t500 is smallest around the station; the members agree with the
# sounding there and differ elsewhere:

# %%
spread = ens.t500.isel(time=0).std("member")
fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
im = ax.pcolormesh(spread.lon, spread.lat, spread, cmap="magma", shading="auto")
fig.colorbar(im, ax=ax, label="ensemble std of t500 (K)")
vlon = float(obs.lon.iloc[0]) % 360
ax.plot(vlon, obs.lat.iloc[0], "c*", ms=14, label="Vienna sounding")
ax.set_xlabel("longitude (°E)")
ax.set_ylabel("latitude (°N)")
ax.set_title(f"t500 ensemble spread, {t_obs:%Y-%m-%d %H} UTC (3 members)")
ax.legend(loc="lower left")
plt.show()

# %%
print(f"total {time.perf_counter() - start:.0f} s (information only; it varies with the load)")

# %% [markdown]
# ## What this shows, and what it does not
#
# The path from NOAA's files to the sampler is exact and checked: records are validated, flags
# and QC removals are kept, the vertical operator interpolates in log-pressure without
# extrapolating, and the errors come from one table. The reconstruction itself is only a
# demonstration: one sounding, three members, six steps, and a prior trained on a simulated
# climate (flat orography, no seasons). For real use, read every station of a period
# (`read_igra` takes a folder and `bbox=`/`stations=` filters), add a coarse analysis as a second
# source (the fusion tutorial) and use a prior trained on reanalysis data (the training
# tutorial and `docs/training.md`).

"""Does stochastic churn keep an exact posterior exact? Spread of 256 members against the exact
posterior standard deviation, with and without churn, on a Gaussian prior.

A spectral Gaussian prior (fitted to smooth random fields on an 8 x 16 grid) has an exact
denoiser, so its posterior given a 4 x 4 conservative average of a field (Gaussian errors) is the
optimal-interpolation posterior ``N(mu + K (y - A mu), P - K A P)``, computed densely here. The
members of ``super_resolve`` (seed 0) should have its spread; the table prints the members' mean
standard deviation over the exact one per variable, for each guidance and churn (``none``: no
observations, against the prior's standard deviation). Churn (Karras et al. 2022, Algorithm 2)
re-adds noise to correct a learned denoiser's error; with an exact denoiser there is none to
correct and only its discretisation error remains.

    python benchmarks/bench_churn_gaussian.py --churn 0 10
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import scipy.sparse as sp
import torch
import xarray as xr

import xdiffsr


def fields(n: int = 6, h: int = 8, w: int = 16, seed: int = 0) -> xr.Dataset:
    """Smooth random fields (a random walk in longitude, smoothed in latitude), two variables."""
    rng = np.random.default_rng(seed)
    lat, lon = np.linspace(80, -80, h), np.arange(w) * 360.0 / w
    amp = 1 + np.cos(np.deg2rad(lat))[:, None]
    base = np.cumsum(rng.normal(size=(n, h, w)), axis=-1)
    base -= base.mean(-1, keepdims=True) * np.linspace(0, 1, w)
    base = (base + np.roll(base, 1, axis=1)) / 2
    t = 250 + 20 * np.cos(np.deg2rad(lat))[:, None] + amp * base
    z = 50000 + 100 * amp * np.roll(base, 2, axis=-1) + rng.normal(size=(n, h, w))
    coords = {"time": np.arange(n), "lat": ("lat", lat, {"units": "degrees_north"}),
              "lon": ("lon", lon, {"units": "degrees_east"})}
    return xr.Dataset({"t850": (("time", "lat", "lon"), t, {"units": "K"}),
                       "z500": (("time", "lat", "lon"), z, {"units": "m2 s-2"})}, coords)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--churn", type=float, nargs="+", default=[0.0, 10.0])
    p.add_argument("--members", type=int, default=256)
    args = p.parse_args()
    torch.set_num_threads(1)
    prior = xdiffsr.GaussianPrior.fit(fields(), covariance="spectral")
    truth = fields(n=1, seed=9).isel(time=0, drop=True)
    cg = xr.Dataset(coords={"lat": ("lat", np.linspace(70, -70, 4), {"units": "degrees_north"}),
                            "lon": ("lon", np.arange(4) * 90.0 + 45, {"units": "degrees_east"})})
    rg = xdiffsr.regrid.Regridder(truth, cg, method="conservative")
    coarse = rg(truth).expand_dims(time=[np.datetime64("2020-01-01")])
    for v in coarse.data_vars:
        coarse[v].attrs["units"] = truth[v].attrs["units"]
    sig2 = {"t850": 0.3**2, "z500": 30.0**2}
    shape = prior.state_shape
    n = int(np.prod(shape))
    B = prior.covariance()(torch.eye(n).reshape(n, *shape)).reshape(n, n).double().numpy().T
    S = prior.normalisation()[1].reshape(-1)
    P = S[:, None] * B * S[None, :]
    A = sp.block_diag([rg.weights.toarray()] * 2).toarray()
    R = np.repeat([sig2["t850"], sig2["z500"]], rg.weights.shape[0])
    K = P @ A.T @ np.linalg.inv(A @ P @ A.T + np.diag(R))
    exact = {"posterior": np.sqrt(np.diag(P - K @ A @ P)).reshape(shape),
             "prior": np.sqrt(np.diag(P)).reshape(shape)}
    print("| guidance | steps | S_churn | " + " | ".join(f"{v} spread / exact"
                                                       for v in prior.variables) + " |")
    print("|---|---:|---:|" + "---:|" * len(prior.variables))
    for guidance, steps in (("mmps", 18), ("jf", 15), ("none", 15)):
        sd = exact["prior" if guidance == "none" else "posterior"]
        for churn in args.churn:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ens = xr.Dataset(coords={"time": coarse.time.values}).diffsr.super_resolve(
                    obs=[xdiffsr.GridObservations(coarse, sigma_y=sig2)], model=prior,
                    members=args.members, steps=steps, guidance=guidance, seed=0,
                    S_churn=churn)
            ratios = [float(ens[v].isel(time=0).std("member").mean()) / sd[i].mean()
                      for i, v in enumerate(prior.variables)]
            print(f"| {guidance} | {steps} | {churn:g} | "
                  + " | ".join(f"{r:.3f}" for r in ratios) + " |", flush=True)


if __name__ == "__main__":
    main()

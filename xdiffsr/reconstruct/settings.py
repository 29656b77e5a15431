"""Sampler settings: names, defaults and which of them change only speed."""

from __future__ import annotations

from typing import Any

GUIDANCES = ("sda", "mmps", "none")


#: Settings of how the network runs (:func:`xdiffsr.core.runtime.with_network_options`).
NETWORK_SETTINGS = ("precision", "channels_last", "compile", "checkpoint")


#: Settings that change speed and memory only (the members agree to float rounding): left out
#: of the ``sampler`` attribute and of the settings a zarr store must match to be resumed.
#: ``precision`` changes the numbers, so it is recorded and checked.
SPEED_SETTINGS = ("batch_size", "max_memory", "channels_last", "compile", "checkpoint")


#: Defaults of the keyword options of :func:`super_resolve` beyond the main ones
#: (``**sampler_options`` of the accessor and of :func:`xdiffsr.parallel.reconstruct_to_zarr`).
SAMPLER_DEFAULTS: dict[str, Any] = dict(
    lambda_g=1.0,
    clip=None,
    cg_iters=10,
    S_churn=0.0,
    S_tmin=0.0,
    S_tmax=float("inf"),
    S_noise=1.0,
    corrector_guidance=True,
    sigma_min=None,
    sigma_max=None,
    batch_size=None,
    max_memory=None,
    precision="fp32",
    channels_last=False,
    compile=False,
    checkpoint=False,
)

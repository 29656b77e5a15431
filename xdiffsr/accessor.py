"""The ``Dataset.diffsr`` accessor: a thin delegate to :func:`xdiffsr.reconstruct.super_resolve`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xarray as xr


@xr.register_dataset_accessor("diffsr")
class DiffSRAccessor:
    """Super-resolution of the times of a Dataset from observations: ``ds.diffsr.super_resolve``."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def super_resolve(
        self,
        obs: Sequence[Any],
        weights: Sequence[float] | None = None,
        *,
        model,
        members: int = 8,
        steps: int = 18,
        seed: int = 0,
        device=None,
        guidance: str = "sda",
        chunks=None,
        **sampler_options,
    ) -> xr.Dataset:
        """Draw posterior ensemble members of the high-resolution state given every source.

        Each member is a sample of the stochastic Heun sampler of Chakraborty et al. (2025),
        Algorithm 1, guided by the weighted sum of the sources' Gaussian log-likelihoods
        (Eqs. 13-14), or by moment matching (MMPS).

        Parameters
        ----------
        obs : list
            Observation sources: tidy DataFrames of point observations (time, lat, lon, variable,
            value[, error]), IGRA sounding frames from :func:`xdiffsr.io.igra.read_igra`,
            Datasets on any regular lat/lon grid (coarse analyses or forecasts), or
            :class:`xdiffsr.PointObservations` / :class:`xdiffsr.GridObservations` carrying
            ``sigma_y``, ``gamma``, ``method``, ``tolerance`` and ``weight``.
        weights : list of float, optional
            One weight per source (Eq. 14), >= 0. Default: each source's ``weight`` or 1.
        model : Prior
            A diffusion model (:func:`xdiffsr.load_model`) or :class:`xdiffsr.GaussianPrior`.
        members : int
            Ensemble size (by default the members are one batch on the device; see
            ``batch_size`` and ``max_memory``).
        steps : int
            Noise levels of the Karras schedule (the sampler evaluates ``2 steps - 1`` times).
        seed : int
            Global seed; members at a time depend only on (seed, timestamp).
        device : str, optional
            'cuda' when available, else 'cpu'.
        guidance : {'sda', 'mmps', 'none'}
            'sda': the paper's likelihood gradient with variance ``Sigma_y + sigma^2 Gamma``;
            'mmps': moment-matching posterior sampling (exact for a Gaussian prior, slower);
            'none': unguided prior samples.
        chunks : int or dict, optional
            ``{'time': n}``: return a lazy (dask) result whose tasks reconstruct ``n`` times each;
            a dask-backed ``ds`` is lazy with its own time chunks.
        **sampler_options
            ``lambda_g`` (guidance scale, 1), ``clip`` (max RMS of the guidance step, None),
            ``cg_iters`` (MMPS, 10), ``S_churn``, ``S_tmin``, ``S_tmax``, ``S_noise``,
            ``corrector_guidance`` (True), ``sigma_min``, ``sigma_max``, and the speed and
            memory options listed under Other Parameters.

        Returns
        -------
        xarray.Dataset
            One variable per model variable with dims (time, member, lat, lon), on the grid of
            ``ds`` if it has one (same points as the model's, any order), else the model grid; CF
            attributes, and provenance attributes (model, sampler, sources, weights, grid
            orientation).

        Other Parameters
        ----------------
        batch_size : int, optional
            Members per network batch (default None: all members in one batch). Each member
            draws its noise from its own generator, so the members do not depend on the
            batching (to float rounding).
        max_memory : int, float or str, optional
            Device memory budget in bytes, or a size such as ``"40GB"`` / ``"40GiB"``, or
            ``"auto"`` (90 % of the free memory of the CUDA device). The batch is the largest
            that fits, from the peak memory of a guided evaluation at batch 1 and 2 extrapolated
            linearly (at most ``batch_size``); an error if one member does not fit. CUDA only:
            on the CPU ``"auto"`` means no limit and a byte budget is ignored with a warning.
        precision : {'fp32', 'bf16'}
            'bf16': the network runs under bf16 autocast; preconditioning, likelihoods,
            conjugate gradients and the sampler state stay fp32. Recorded in the ``sampler``
            attribute. Priors without a network (GaussianPrior) always run in fp32.
        channels_last : bool
            Feed the network channels-last (NHWC) tensors (faster convolutions on recent GPUs).
        compile : bool or str
            ``torch.compile`` the network (True, or a mode such as ``"max-autotune"``), once
            per process; the first evaluations pay the compilation.
        checkpoint : bool
            Activation checkpointing of the network's blocks in the guided backward pass: less
            memory (larger batches) for about one more forward pass per evaluation.

        References
        ----------
        Chakraborty et al. (2025), Multimodal atmospheric super-resolution with deep generative
        models. Karras et al. (2022). Rozet & Louppe (2023). Rozet et al. (2024).
        """
        from xdiffsr.reconstruct import super_resolve

        return super_resolve(
            self._ds,
            obs,
            weights,
            model=model,
            members=members,
            steps=steps,
            seed=seed,
            device=device,
            guidance=guidance,
            chunks=chunks,
            **sampler_options,
        )

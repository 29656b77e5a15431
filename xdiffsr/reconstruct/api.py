"""``super_resolve``: posterior ensembles of the high-resolution state, eager or lazy over time."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from xdiffsr.errors import XDiffSRWarning
from xdiffsr.models.prior import Prior
from xdiffsr.models.reference import ModelRef, model_handle
from xdiffsr.progress import progress_bar
from xdiffsr.reconstruct.diagnostics import check_climate
from xdiffsr.reconstruct.plan import check_device, check_output_memory, time_chunks
from xdiffsr.reconstruct.reconstruction import Reconstruction
from xdiffsr.reconstruct.sample import steps_per_time
from xdiffsr.reconstruct.settings import SamplerSettings
from xdiffsr.reconstruct.tasks import compute_chunk


def super_resolve(
    ds: xr.Dataset,
    obs: Sequence[Any],
    weights: Sequence[float] | None = None,
    *,
    model: Prior,
    device: str | torch.device | None = None,
    chunks: Mapping[str, int] | int | None = None,
    progress: bool = False,
    settings: SamplerSettings | None = None,
    member_dim: str = "member",
    output_grid: str = "ds",
    assume_units: bool = False,
    **sampler_options: Any,
) -> xr.Dataset:
    """Draw posterior ensemble members of the high-resolution state given every source.

    Each member is a sample of the stochastic Heun sampler of Chakraborty et al. (2025),
    Algorithm 1, guided by the weighted sum of the sources' Gaussian log-likelihoods
    (Eqs. 13-14), or by moment matching (MMPS). Also ``ds.diffsr.super_resolve(obs, ...)``.

    Parameters
    ----------
    ds : xarray.Dataset
        Supplies the times to reconstruct (a datetime time coordinate) and optionally the output
        grid (lat/lon with the model's points in any order or convention).
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
    device : str, optional
        'cuda' when available, else 'cpu'.
    chunks : int or dict, optional
        ``{'time': n}``: return a lazy (dask) result whose tasks reconstruct ``n`` times each;
        a dask-backed ``ds`` is lazy with its own time chunks.
    progress : bool
        A tqdm progress bar (notebook widget or terminal) over the times and sampler steps
        (``len(times) * steps`` in all). Eager results only: a lazy result warns and shows
        none (use dask's ``ProgressBar`` or ``distributed.progress`` on its computation).
    settings : SamplerSettings, optional
        Sampler settings; ``**sampler_options`` change some of them.
    member_dim : str
        Name of the ensemble dimension of the result (``"member"``; e.g. ``"realization"``,
        ``"number"``, ``"ensemble"``).
    output_grid : {"ds", "model"}
        ``"ds"``: the result is on the grid of ``ds`` (its names, order and orientation) when
        ``ds`` has one, which must hold the model's points (another grid, curvilinear or
        irregular, is refused, never ignored); ``"model"``: on the model grid whatever ``ds``
        carries (regrid afterwards with :class:`xdiffsr.regrid.Regridder`).
    assume_units : bool
        Take observations without units (no ``units`` column or attribute) to be in the
        model's units; by default they are refused with :class:`~xdiffsr.errors.UnitsError`.
    **sampler_options
        The fields of :class:`xdiffsr.SamplerSettings` (its docstring lists them with their
        defaults): ``members`` (8), ``steps`` (15), ``seed`` (0), ``guidance`` ('jf', the
        default, 'mmps', 'sda' or 'none'), ``lambda_g``, ``clip``, ``cg_iters``, ``mmps_sigmas``,
        ``cg_tol``, ``S_churn``, ``S_tmin``, ``S_tmax``,
        ``S_noise``, ``corrector_guidance``, ``sigma_min``, ``sigma_max``, and the speed and
        memory options ``batch_size``, ``max_memory`` (``"40GB"``, ``"auto"``; CUDA),
        ``precision`` ('auto': bf16 where the device runs it natively, else fp32; 'fp32',
        'bf16'), ``channels_last``, ``compile`` and ``checkpoint``.
        Members depend only on (seed, timestamp, member index): not on the chunks or the
        workers (bit for bit), nor on ``batch_size`` beyond the rounding of the network's
        precision (fp32: about 1e-6 relative; bf16, the default on bf16 hardware: about 1e-2).

    Returns
    -------
    xarray.Dataset
        One variable per model variable with dims (time, member, lat, lon) under the caller's
        names (the time, latitude and longitude of ``ds``, ``member_dim``), on the grid of
        ``ds`` if it has one (same points as the model's, kept in its order and longitude
        convention), else the model grid; CF attributes, and provenance attributes
        (``xdiffsr_version``, ``model_name``, ``model_sha256``, sampler, sources, weights, grid
        orientation; the caller's ``history`` with this run appended). ``sampler`` is strict
        JSON of :meth:`SamplerSettings.record` (an infinite ``S_tmax`` is the string
        ``"inf"``). Eager results also carry observation-space diagnostics on (time,
        source): ``obs_count``, ``obs_rms`` (observation minus ensemble mean), ``obs_spread``
        (ensemble spread at the observations), ``obs_error`` (effective error std
        ``sqrt(sigma_y / weight)``) and ``obs_chi2`` (normalised innovation chi-square, about 1
        when the error model is right; defined in :mod:`xdiffsr.reconstruct.diagnostics`).
        Lazy results carry none (compute them with
        :func:`xdiffsr.reconstruct.diagnostics.observation_diagnostics`).

    Warns
    -----
    XDiffSRWarning
        A source whose chi-square is far from 1 (> 4 or < 0.25 with >= 20 observations), an
        ensemble that ends far from a source's observations, and observations far outside the
        prior's climate (> 10 % of values beyond 6 normalisation scales; lazy results check the
        first time chunk only).

    Raises
    ------
    ArgumentError
        An unknown sampler option (naming the closest valid one), an invalid value, a ``model``
        that is not a prior, weights that do not match the sources.

    References
    ----------
    Chakraborty et al. (2025), Multimodal atmospheric super-resolution with deep generative
    models. Karras et al. (2022). Rozet & Louppe (2023). Rozet et al. (2024).
    """
    rec = Reconstruction(ds, obs, weights, model=model, settings=settings, device=device,
                         member_dim=member_dim, output_grid=output_grid,
                         assume_units=assume_units, **sampler_options)
    n_chunk = time_chunks(ds, rec.plan.tname, chunks)
    check_device(device, lazy=n_chunk is not None)
    check_output_memory(rec.plan, model, n_chunk)
    if n_chunk is None:
        total = len(rec.times) * steps_per_time(model, rec.settings)
        with progress_bar(total=total, unit="step", desc="xdiffsr", disable=not progress) as bar:
            return rec.run(device=device, progress=bar.update if progress else None,
                           stacklevel=2)
    if progress:
        warnings.warn(
            "progress=True shows no bar for a lazy result (chunks or a dask-backed ds); "
            "use dask.diagnostics.ProgressBar or distributed.progress when computing it.",
            XDiffSRWarning,
            stacklevel=2,
        )
    check_climate(model, rec.sources, rec.times[:n_chunk])  # the first chunk's times
    return rec.to_dataset(_lazy(rec, device, n_chunk))


def _lazy(rec: Reconstruction, device, n_chunk: int):
    """Dask array (time, member, C, H, W): one task per time chunk.

    Each task gets a light handle of the model (:func:`xdiffsr.models.model_handle`: a file
    reference resolved through a per-process cache, or one shared graph key for in-memory
    priors), the sources windowed to its times (:meth:`Reconstruction.window`), and resolves
    its device on the worker.
    """
    import dask
    import dask.array as da
    from dask.base import tokenize

    handle = model_handle(rec.model)
    shape = (rec.settings.members, *rec.model.state_shape)
    ident = handle.token if isinstance(handle, ModelRef) else handle.key
    base = tokenize(
        ident, rec.settings.as_dict(), rec.weights, rec.plan.ilat, rec.plan.ilon, str(device)
    )
    parts = []
    for i0 in range(0, len(rec.times), n_chunk):
        tc = rec.times[i0 : i0 + n_chunk]
        args = rec.window(tc, device)
        name = f"xdiffsr-chunk-{tokenize(base, args.token())}"
        part = dask.delayed(compute_chunk, pure=True)(handle, args, dask_key_name=name)
        parts.append(da.from_delayed(part, (len(tc), *shape), dtype=np.float32))
    return da.concatenate(parts, axis=0)

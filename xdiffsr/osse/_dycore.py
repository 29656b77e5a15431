"""The Held & Suarez (1994) dry dynamical core of ``dinosaur``, set up for the OSSE.

Shared by the nature run (:mod:`xdiffsr.osse.nature`) and the coarse emulator
(:mod:`xdiffsr.osse.emulator`): model construction, the one-output-interval step, conversion of the
spectral sigma-level state to the 13 output variables on pressure levels, and the inverse (building
a model state from pressure-level fields).

References
----------
.. [1] Held, I. M. and Suarez, M. J. (1994). A proposal for the intercomparison of the dynamical
   cores of atmospheric general circulation models. *Bull. Amer. Meteor. Soc.*, 75, 1825-1830.
.. [2] Kochkov, D. et al. (2024). Neural general circulation models for weather and climate.
   *Nature*, 632, 1060-1066 (the ``dinosaur`` dynamical core).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from xdiffsr.errors import ArgumentError, ModelError

LEVELS_HPA = (850, 500, 250)
QUANTITIES = ("t", "u", "v", "z")
VARIABLES = (*(f"{q}{p}" for q in QUANTITIES for p in LEVELS_HPA), "sp")

_CF = {
    "t": ("air_temperature", "K", "Temperature"),
    "u": ("eastward_wind", "m s-1", "Eastward wind"),
    "v": ("northward_wind", "m s-1", "Northward wind"),
    "z": ("geopotential", "m2 s-2", "Geopotential"),
}


def variable_attrs(name: str) -> dict[str, Any]:
    """CF attributes of an output variable (``t850``, ..., ``sp``)."""
    if name == "sp":
        return {
            "standard_name": "surface_air_pressure",
            "units": "Pa",
            "long_name": "Surface pressure",
        }
    std, units, long = _CF[name[0]]
    return {
        "standard_name": std,
        "units": units,
        "long_name": f"{long} at {name[1:]} hPa",
        "pressure_level_hPa": int(name[1:]),
    }


def require_dinosaur():
    """Import ``dinosaur`` and ``jax`` or raise an error naming the optional extra."""
    try:
        import dinosaur  # noqa: F401
        import jax  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ModelError(
            "xdiffsr.osse needs the optional dependencies dinosaur and jax; install them with "
            "`pip install 'xdiffsr[osse]'`"
        ) from exc


def apply_gpu_precision_fix() -> str:
    """Force exact float32 spectral transforms on GPU; return the JAX backend name.

    ``dinosaur`` resolves float32 transform matmuls on GPU to the ``BF16_BF16_F32_X6`` dot
    algorithm, which loses ~8% of the atmosphere's mass in Held-Suarez runs (measured on an H100
    with jax 0.11.2); ``Precision.HIGHEST`` restores float32 accuracy at the same speed. CPU is
    exact anyway.
    """
    import jax
    from dinosaur import jax_numpy_utils

    backend = jax.default_backend()
    if backend == "gpu":
        jax_numpy_utils.FLOAT32_DOT_ALGORITHM = jax.lax.Precision.HIGHEST
    return backend


@dataclasses.dataclass(frozen=True)
class DycoreConfig:
    """Configuration of the Held-Suarez dynamical core (all that determines a trajectory)."""

    truncation: int = 42
    layers: int = 20
    dt_minutes: float = 20.0
    seed: int = 0
    perturbation_pa: float = 100.0
    output_nlat: int = 64
    output_nlon: int = 128
    #: Temperature also diagnosed at these pressure levels (hPa), as ``t<hPa>`` (e.g. the
    #: columns of satellite-like observations); output only, the trajectory is the same.
    extra_temperature_levels: tuple[int, ...] = ()

    def validate(self) -> None:
        if self.truncation not in (21, 31, 42, 85, 106, 119, 170, 213):
            raise ArgumentError(
                f"truncation: {self.truncation!r} is not a supported triangular truncation; "
                "use one of 21, 31, 42, 85, 106, 119, 170, 213"
            )
        if not (isinstance(self.layers, int | np.integer) and 3 <= self.layers <= 100):
            raise ArgumentError(f"layers: expected an integer in [3, 100], got {self.layers!r}")
        extra = self.extra_temperature_levels
        if not all(isinstance(p, int | np.integer) and 1 <= p <= 1100 for p in extra) or len(
            set(extra) | set(LEVELS_HPA)
        ) != len(extra) + len(LEVELS_HPA):
            raise ArgumentError(
                f"extra_temperature_levels: expected distinct integer pressures in [1, 1100] "
                f"hPa other than {LEVELS_HPA}, got {extra!r}"
            )
        if not (np.isfinite(self.dt_minutes) and 0 < self.dt_minutes <= 120):
            raise ArgumentError(
                f"dt_minutes: expected a time step in (0, 120] minutes, got {self.dt_minutes!r}"
            )

    def steps_per(self, interval_minutes: float, name: str = "output_every") -> int:
        """Number of model steps in ``interval_minutes`` (must be a multiple of the step)."""
        n = interval_minutes / self.dt_minutes
        if n < 1 or abs(n - round(n)) > 1e-9:
            raise ArgumentError(
                f"{name}: {interval_minutes} min is not a positive multiple of the time step "
                f"dt_minutes={self.dt_minutes}; choose a step that divides it"
            )
        return round(n)

    def asdict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not self.extra_temperature_levels:  # the configuration of runs made before it
            del out["extra_temperature_levels"]
        else:
            out["extra_temperature_levels"] = [int(p) for p in self.extra_temperature_levels]
        return out

    @property
    def variables(self) -> tuple[str, ...]:
        """Output variables: :data:`VARIABLES`, then ``t<hPa>`` of the extra levels."""
        return VARIABLES + tuple(f"t{int(p)}" for p in self.extra_temperature_levels)


class Dycore:
    """A built Held-Suarez dynamical core: step function, diagnostics and state conversion.

    Parameters
    ----------
    config : DycoreConfig
        Model configuration.
    steps_per_interval : int
        Model steps per call of :meth:`advance` (one output interval).
    """

    def __init__(self, config: DycoreConfig, steps_per_interval: int):
        require_dinosaur()
        import jax
        from dinosaur import (
            coordinate_systems,
            held_suarez,
            primitive_equations,
            primitive_equations_states,
            scales,
            sigma_coordinates,
            spherical_harmonic,
            time_integration,
            xarray_utils,
        )

        config.validate()
        self.backend = apply_gpu_precision_fix()
        self.config = config
        units = scales.units
        grid = getattr(spherical_harmonic.Grid, f"T{config.truncation}")()
        vertical = sigma_coordinates.SigmaCoordinates.equidistant(config.layers)
        self.coords = coordinate_systems.CoordinateSystem(horizontal=grid, vertical=vertical)
        self.specs = primitive_equations.PrimitiveEquationsSpecs.from_si()
        init_fn, aux = primitive_equations_states.isothermal_rest_atmosphere(
            self.coords, self.specs, p1=config.perturbation_pa * units.pascal
        )
        self._init_fn = init_fn
        self.ref_temps = np.asarray(aux[xarray_utils.REF_TEMP_KEY])
        # Flat orography: the Held-Suarez benchmark is defined without topography [1].
        orography = primitive_equations.truncated_modal_orography(
            aux[xarray_utils.OROGRAPHY], self.coords
        )
        equation = time_integration.compose_equations(
            [
                primitive_equations.PrimitiveEquationsSigma(
                    self.ref_temps, orography, self.coords, self.specs
                ),
                held_suarez.HeldSuarezForcingSigma(self.coords, self.specs, self.ref_temps),
            ]
        )
        dt = self.specs.nondimensionalize(config.dt_minutes * units.minute)
        step = time_integration.imex_rk_sil3(equation, dt)
        # Scale-selective hyperdiffusion of the highest wavenumbers (dinosaur's Held-Suarez setup).
        filters = [
            time_integration.exponential_step_filter(grid, dt, tau=0.0087504, order=1.5, cutoff=0.8)
        ]
        step = time_integration.step_with_filters(step, filters)
        self.advance = jax.jit(time_integration.repeated(step, steps_per_interval))
        self.out_grid = dataclasses.replace(
            grid,
            latitude_nodes=config.output_nlat,
            longitude_nodes=config.output_nlon,
            latitude_spacing="equiangular",
        )
        self.scales = {
            "pa": float(self.specs.dimensionalize(1.0, units.pascal).m),
            "ms": float(self.specs.dimensionalize(1.0, units.meter / units.second).m),
            "k": float(self.specs.dimensionalize(1.0, units.degK).m),
            "phi": float(self.specs.dimensionalize(1.0, units.meter**2 / units.second**2).m),
        }
        self.diagnose = jax.jit(functools.partial(_diagnose, self))
        self.state_cls = primitive_equations.State

    # ------------------------------------------------------------------------------- state
    @property
    def lat(self) -> np.ndarray:
        """Output latitudes in degrees (ascending, cell centres)."""
        return np.rad2deg(self.out_grid.latitudes)

    @property
    def lon(self) -> np.ndarray:
        """Output longitudes in degrees east, from 0."""
        return np.rad2deg(self.out_grid.longitudes)

    def initial_state(self):
        """Isothermal (288 K) resting atmosphere at 1000 hPa with a seeded perturbation."""
        import jax

        return self._init_fn(rng_key=jax.random.PRNGKey(self.config.seed))

    def state_to_numpy(self, state) -> dict[str, np.ndarray]:
        """The spectral state as a dict of numpy arrays (for restart files)."""
        return {
            "vorticity": np.asarray(state.vorticity),
            "divergence": np.asarray(state.divergence),
            "temperature_variation": np.asarray(state.temperature_variation),
            "log_surface_pressure": np.asarray(state.log_surface_pressure),
        }

    def state_from_numpy(self, arrays: dict[str, np.ndarray]):
        """Inverse of :meth:`state_to_numpy`; checks the spectral shapes."""
        import jax.numpy as jnp

        shape = self.coords.modal_shape
        if tuple(arrays["vorticity"].shape) != tuple(shape):
            raise ModelError(
                f"restart state: spectral shape {arrays['vorticity'].shape} does not match the "
                f"model's {shape}; restart with the configuration that wrote it"
            )
        return self.state_cls(
            **{
                k: jnp.asarray(arrays[k])
                for k in (
                    "vorticity",
                    "divergence",
                    "temperature_variation",
                    "log_surface_pressure",
                )
            }
        )

    def global_mean_surface_pressure(self, state) -> float:
        """Exact (Gaussian-quadrature) global mean surface pressure of a state, in Pa."""
        grid = self.coords.horizontal
        log_ps = np.asarray(grid.to_nodal(state.log_surface_pressure), dtype=np.float64)[0]
        w = np.asarray(grid.spherical_harmonics.basis.w, dtype=np.float64)  # (lat,) quadrature
        ps = np.exp(log_ps + np.log(self.scales["pa"]))  # (lon, lat)
        return float(np.sum(ps.mean(axis=0) * w) / np.sum(w))


@functools.lru_cache(maxsize=4)
def get_dycore(config: DycoreConfig, steps_per_interval: int) -> Dycore:
    """A cached :class:`Dycore` (building and compiling one takes seconds)."""
    return Dycore(config, steps_per_interval)


def _log_sigma_interp(fields, log_sigma, target, extrapolate: bool):
    """Interpolate ``fields`` (L, ...) given at ``log_sigma`` (L,) to ``target`` (...) linearly in
    log-pressure (log sigma = log p - log ps); constant (or linear) beyond the end layers."""
    import jax.numpy as jnp

    n = log_sigma.shape[0]
    idx = jnp.clip(jnp.searchsorted(log_sigma, target) - 1, 0, n - 2)
    x0, x1 = log_sigma[idx], log_sigma[idx + 1]
    w = (target - x0) / (x1 - x0)
    if not extrapolate:
        w = jnp.clip(w, 0.0, 1.0)
    f0 = jnp.take_along_axis(fields, idx[None], axis=0)[0]
    f1 = jnp.take_along_axis(fields, idx[None] + 1, axis=0)[0]
    return f0 + w * (f1 - f0)


def _diagnose(dycore: Dycore, state) -> dict[str, Any]:
    """The 13 output variables (lat, lon) on the output grid from a spectral state (jit-able)."""
    import jax.numpy as jnp
    from dinosaur import primitive_equations, spherical_harmonic

    grid, sc, specs = dycore.out_grid, dycore.scales, dycore.specs
    sigma = dycore.coords.vertical
    temp = grid.to_nodal(state.temperature_variation) + dycore.ref_temps[:, None, None]
    u, v = spherical_harmonic.vor_div_to_uv_nodal(grid, state.vorticity, state.divergence)
    log_ps = grid.to_nodal(state.log_surface_pressure)[0] + np.log(sc["pa"])  # log Pa
    phi = primitive_equations.get_geopotential_on_sigma(
        temp,
        nodal_orography=jnp.zeros_like(temp[0]),
        sigma=sigma,
        gravity_acceleration=specs.g,
        ideal_gas_constant=specs.R,
    )
    log_sigma = jnp.asarray(np.log(sigma.centers))
    out = {}
    for p in LEVELS_HPA:
        target = np.log(p * 100.0) - log_ps
        out[f"t{p}"] = _log_sigma_interp(temp, log_sigma, target, False) * sc["k"]
        out[f"u{p}"] = _log_sigma_interp(u, log_sigma, target, False) * sc["ms"]
        out[f"v{p}"] = _log_sigma_interp(v, log_sigma, target, False) * sc["ms"]
        # hydrostatic: phi is linear in log p for an isothermal layer, so extrapolate linearly
        out[f"z{p}"] = _log_sigma_interp(phi, log_sigma, target, True) * sc["phi"]
    for p in dycore.config.extra_temperature_levels:
        target = np.log(p * 100.0) - log_ps
        out[f"t{p}"] = _log_sigma_interp(temp, log_sigma, target, False) * sc["k"]
    out["sp"] = jnp.exp(log_ps)
    # dinosaur's nodal arrays are (lon, lat): return (lat, lon)
    return {k: out[k].T for k in dycore.config.variables}

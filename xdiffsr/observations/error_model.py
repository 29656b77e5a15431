"""The one table of default observation-error standard deviations, by quantity.

Every observation path of the package takes its default errors from here: point and gridded
sources (:mod:`xdiffsr.observations.sources`, when a source gives neither ``sigma_y`` nor an
``error`` column), the sounding operator (:func:`xdiffsr.observations.vertical.
soundings_to_observations`) and the radiosonde simulator of the OSSEs. ``DEFAULT_ERROR_STD``
(sources) and ``DEFAULT_ERRORS`` (vertical operator) are two names of the *same* dict, so an
override of one is seen by all.

Values, in model units (standard deviations, not variances):

========  ===============  =====================================================================
key       std              quantity
========  ===============  =====================================================================
``t``     1.0 K            temperature on pressure levels
``u, v``  2.0 m s-1        wind components on pressure levels
``z``     98.0665 m2 s-2   geopotential: 10 m of geopotential height times g0 = 9.80665 m s-2 [1]
``gh``    10.0 m           geopotential height (the same error as ``z``, in metres)
``r``     10.0 %           relative humidity
``q``     1e-3 kg kg-1     specific humidity
``sp``    100.0 Pa         surface pressure
``msl``   100.0 Pa         mean-sea-level pressure
``t2m``   1.0 K            2 m temperature
``u10``   2.0 m s-1        10 m wind components (also ``v10``)
========  ===============  =====================================================================

They are nominal values of the order of the radiosonde errors (instrument plus
representativeness) used in global data assimilation, not a fitted table; override them per
source (``sigma_y``) or per sounding call (``errors={"t": 0.5}`` or ``{"t250": 1.5}``).

Choice of ``z``: the two tables this module replaces disagreed (sources 100 m2 s-2, "about 10 m";
soundings exactly ``10 * g0``). The value is now exactly 10 geopotential metres, 98.0665 m2 s-2,
so ``z`` and ``gh`` describe the same error and a sounding and a grid observing ``z500`` get the
same variance. For gridded and point sources without errors this lowers the default ``z`` std by
1.9 % (variance by 3.8 %); the other shared values (``t``, ``u``, ``v``, ``r``, ``q``) were equal.

References
----------
.. [1] WMO (1988). Technical Regulations, Vol. I, WMO-No. 49: standard gravity g0 = 9.80665 m s-2
   relating geopotential and geopotential height.
"""

from __future__ import annotations

import re

from xdiffsr.errors import ObservationError

__all__ = ["DEFAULT_ERRORS", "DEFAULT_ERROR_STD", "G0", "default_error_std"]

#: Standard gravity (m s-2) relating geopotential (m2 s-2) to geopotential height (m) [1].
G0 = 9.80665

#: Default observation-error standard deviations by quantity (or by full single-level name), in
#: model units; see the module docstring for the values and their choice.
DEFAULT_ERROR_STD: dict[str, float] = {
    "t": 1.0,  # K
    "u": 2.0,  # m s-1
    "v": 2.0,  # m s-1
    "z": 10.0 * G0,  # m2 s-2: 10 m of geopotential height
    "gh": 10.0,  # m
    "r": 10.0,  # %
    "q": 1.0e-3,  # kg kg-1
    "sp": 100.0,  # Pa
    "msl": 100.0,  # Pa
    "t2m": 1.0,  # K
    "u10": 2.0,  # m s-1
    "v10": 2.0,  # m s-1
}

#: The same table under the name used by the sounding operator (an alias, not a copy).
DEFAULT_ERRORS = DEFAULT_ERROR_STD

_LEVEL_RE = re.compile(r"^([a-z]+)\d+(?:\.\d+)?$")


def default_error_std(variable: str) -> float:
    """Default error standard deviation of a model variable.

    Parameters
    ----------
    variable : str
        A model variable: a key of :data:`DEFAULT_ERROR_STD` (``"sp"``, ``"t2m"``) or a quantity
        followed by its level (``"t850"``, ``"z500"``, ``"u87.5"``).

    Returns
    -------
    float
        The standard deviation, in the variable's units.

    Raises
    ------
    ObservationError
        No default for this variable.

    Examples
    --------
    >>> default_error_std("t850"), default_error_std("sp")
    (1.0, 100.0)
    >>> round(default_error_std("z500"), 4)
    98.0665
    """
    if variable in DEFAULT_ERROR_STD:
        return DEFAULT_ERROR_STD[variable]
    m = _LEVEL_RE.match(variable) if isinstance(variable, str) else None
    if m is not None and m.group(1) in DEFAULT_ERROR_STD:
        return DEFAULT_ERROR_STD[m.group(1)]
    raise ObservationError(
        f"no default observation error for variable {variable!r}; pass sigma_y (a variance, or a "
        "dict by variable) to the source, or add an 'error' column (standard deviation)."
    )

"""Progress bars: a notebook widget where Jupyter can show one, a text bar otherwise.

``tqdm.auto`` picks the widget inside Jupyter even where ``ipywidgets`` is not installed, and
then warns ("IProgress not found") on every bar; :func:`progress_bar` uses the widget only when
``ipywidgets`` imports. Importing this module (``import xdiffsr`` does, first) also imports
``tqdm.auto`` once with that warning silenced, since pooch imports it at its own import.
"""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="IProgress not found")
    import tqdm.auto  # noqa: F401

__all__ = ["progress_bar"]


def progress_bar(**kwargs: Any):
    """A ``tqdm`` bar (``kwargs`` as for ``tqdm``): the notebook widget in Jupyter when
    ``ipywidgets`` is installed, else the text bar."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(**kwargs)

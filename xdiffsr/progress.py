"""Progress bars: a notebook widget where Jupyter can show one, a text bar otherwise.

``tqdm.auto`` picks the widget inside Jupyter even where ``ipywidgets`` is not installed, and
then warns ("IProgress not found") on every bar; :func:`progress_bar` uses the widget only when
``ipywidgets`` imports.
"""

from __future__ import annotations

from typing import Any

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

"""Progress bars never warn about a missing notebook widget."""

from __future__ import annotations

import sys
import warnings

from tqdm.std import tqdm as text_tqdm

from xdiffsr.progress import progress_bar


def test_without_ipywidgets_the_bar_is_the_text_bar_and_does_not_warn(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets -> ImportError
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bar = progress_bar(total=3, disable=True)
        bar.update(3)
        bar.close()
    assert type(bar) is text_tqdm

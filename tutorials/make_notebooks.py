"""Build the tutorial notebooks from their ``# %%`` percent-format sources (``*.py`` beside this).

    python tutorials/make_notebooks.py

The notebooks are committed unexecuted; ``tests/test_tutorials.py`` runs every code cell.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def cells_of(source: str) -> list[dict]:
    cells = []
    for block in source.split("# %%")[1:]:
        header, _, body = block.partition("\n")
        body = body.strip("\n")
        if header.strip() == "[markdown]":
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                             for line in body.splitlines())
            cells.append({"cell_type": "markdown", "metadata": {}, "source": text})
        else:
            cells.append({"cell_type": "code", "metadata": {}, "execution_count": None,
                          "outputs": [], "source": body})
    return cells


def main() -> None:
    for src in sorted(HERE.glob("[0-9]*.py")):
        nb = {"nbformat": 4, "nbformat_minor": 5,
              "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                          "language": "python"}},
              "cells": cells_of(src.read_text())}
        src.with_suffix(".ipynb").write_text(json.dumps(nb, indent=1) + "\n")


if __name__ == "__main__":
    main()

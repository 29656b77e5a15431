"""Build the tutorial notebooks from their ``# %%`` percent-format sources (``*.py`` beside this).

    python tutorials/make_notebooks.py            # cells only, no outputs
    python tutorials/make_notebooks.py --execute  # run them (in this folder) and store outputs
    python tutorials/make_notebooks.py --execute 02_fusion 03_uncertainty  # only these

The notebooks are committed executed, so that the repository and the documentation site show
what the tutorial printed; ``tests/test_tutorials.py`` runs every code cell again and checks that
each notebook's cells are those of its source, and the documentation build (``docs/conf.py``,
myst-nb) executes them again. ``--execute`` needs ``nbclient`` and ``ipykernel`` (the ``docs``
extra).
"""

from __future__ import annotations

import argparse
import json
import time
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


def notebook_of(source: str) -> dict:
    return {"nbformat": 4, "nbformat_minor": 4,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}},
            "cells": cells_of(source)}


def execute(nb: dict) -> dict:
    """Run every cell with a fresh kernel in this folder; outputs stored, no timing metadata."""
    import nbformat
    from nbclient import NotebookClient

    node = nbformat.from_dict(nb)
    NotebookClient(node, timeout=900, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(HERE)}}).execute()
    out = json.loads(nbformat.writes(node))
    for cell in out["cells"]:  # nbformat 4.4: no cell ids (they would change on every run)
        cell.pop("id", None)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="run and store the outputs")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="notebooks to build (e.g. 02_fusion); default: all")
    args = parser.parse_args(argv)
    sources = sorted(HERE.glob("[0-9]*.py"))
    if args.names:
        wanted = {Path(n).stem for n in args.names}
        unknown = sorted(wanted - {s.stem for s in sources})
        if unknown:
            parser.error(f"no tutorial source named {unknown}; have {[s.stem for s in sources]}")
        sources = [s for s in sources if s.stem in wanted]
    for src in sources:
        t0 = time.perf_counter()
        nb = notebook_of(src.read_text())
        if args.execute:
            nb = execute(nb)
        src.with_suffix(".ipynb").write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        if args.execute:
            print(f"{src.stem}: executed in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()

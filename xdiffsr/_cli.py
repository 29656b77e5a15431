"""Running a command line: user errors become one line on stderr and an exit status.

Shared by ``xdiffsr`` (:mod:`xdiffsr.__main__`) and ``python -m xdiffsr.train``: 0 success, 1 data
that could not be read or written, 2 usage errors and invalid input (any
:class:`~xdiffsr.errors.XDiffSRError`), 130 interrupted; ``--debug`` re-raises instead.
"""

from __future__ import annotations

import sys

from xdiffsr.errors import XDiffSRError

__all__ = ["fail", "run_cli"]


def fail(message: str, code: int, prog: str = "xdiffsr") -> int:
    """Print ``prog: error: message`` as one line on stderr and return ``code``."""
    text = " ".join(str(message).split())  # one line
    print(f"{prog}: error: {text}", file=sys.stderr)
    return code


def run_cli(body, argv: list[str], prog: str = "xdiffsr") -> int:
    """Run ``body(argv)`` turning user errors into one line on stderr and an exit status.

    Parameters
    ----------
    body : callable
        Parses ``argv`` and runs the command; returns the exit status.
    argv : list of str
        The arguments; ``--debug`` among them re-raises instead.
    prog : str
        Name in the error line.

    Returns
    -------
    int
        0, 1 (data could not be read or written), 2 (usage or invalid input) or 130.
    """
    debug = "--debug" in argv
    try:
        return body(argv)
    except SystemExit as stop:  # argparse: --help, --version, usage errors
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except KeyboardInterrupt:
        if debug:
            raise
        return fail("interrupted", 130, prog)
    except XDiffSRError as err:
        if debug:
            raise
        return fail(f"{err} (rerun with --debug for the traceback)", 2, prog)
    except (OSError, ValueError, KeyError) as err:
        if debug:
            raise
        what = type(err).__name__
        return fail(f"{what}: {err} (rerun with --debug for the traceback)", 1, prog)

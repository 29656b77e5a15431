"""The command line under generated bad input: every call ends with an exit status (0, 1 or 2)
and at most one line on stderr, never a Python traceback (property test with hypothesis).

Values are drawn so that no subcommand reaches the point of running a model: each argv carries at
least one invalid value or missing file, which the parser or the early checks must refuse.
"""

from __future__ import annotations

import contextlib
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdiffsr.__main__ import main

_JUNK = st.sampled_from(
    ["", "-1", "0", "nan", "inf", "1e999", "abc", "12h", "5h", "/no/such/file.nc", "ünï",
     "--", "-", "1.5", "2**32", "none", "{bad json", "cuda:99"]
)
_OPTIONS = {
    "demo": ["--members", "--steps", "--guidance", "--cg-iters", "--model", "--device", "--seed"],
    "evaluate": ["--truth", "--members", "--steps", "--weights", "--lead", "--times",
                 "--stations", "--coarse-grid", "--oi-rank", "--withhold"],
    "sequential": ["--truth", "--days", "--cycle", "--start", "--members", "--weight"],
}


@st.composite
def bad_argv(draw):
    command = draw(st.sampled_from(sorted(_OPTIONS)))
    options = draw(st.lists(st.sampled_from(_OPTIONS[command]), min_size=1, max_size=3,
                            unique=True))
    argv = [command]
    for opt in options:
        argv += [opt, draw(_JUNK)]
    if command != "demo" and "--truth" not in options:
        argv += ["--truth", "/no/such/truth.zarr"]  # never a run: the truth is always missing
    if command == "demo":
        argv += ["--model", "/no/such/model.safetensors"]
    return argv


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=bad_argv())
def test_cli_never_shows_a_traceback(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    err, out = err.getvalue(), out.getvalue()
    assert code in (1, 2), (argv, code, err)
    assert "Traceback" not in err and "Traceback" not in out, argv
    lines = [line for line in err.splitlines() if line.strip()]
    # argparse prints its usage line then one error line; our own errors are one line
    assert [line for line in lines if "error" in line] == [lines[-1]], (argv, err)

"""Runs a piece of test code in a child Python with a deadline and an address-space cap, so a hang or
a memory blow-up fails the test (instead of hanging the suite or the machine) and the child's peak
memory can be asserted. The child sees the tests' import path (imagebuilder, settings_fixtures)."""
from __future__ import annotations

import json
import os
import pathlib
import resource
import subprocess
import sys
import textwrap

HERE = pathlib.Path(__file__).resolve().parent
TESTS = HERE.parents[1]

PRELUDE = """
import json, sys
sys.path[:0] = {paths!r}
def done(value):
    # VmHWM belongs to this process image: ru_maxrss would also count the pages of the (possibly large)
    # test process this child was forked from, before it exec'd
    peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({{"value": value, "peak_mb": peak_kib / 1024}}))
"""


class Bounded(Exception):
    pass


def run_bounded(code: str, timeout: float = 60.0, memory_mb: int = 3072, env: dict | None = None) -> dict:
    """Runs `code` (which calls done(value) with a JSON-serializable value) and returns
    {"value": ..., "peak_mb": ...}; raises Bounded naming the time or the failure when it did not finish."""
    source = PRELUDE.format(paths=[str(TESTS), str(HERE)]) + textwrap.dedent(code)

    def limit():  # runs in the child before exec
        cap = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    try:
        proc = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=timeout,
                              preexec_fn=limit, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        raise Bounded(f"did not finish within {timeout} s (killed)") from None
    if proc.returncode != 0:
        raise Bounded(f"exit status {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])

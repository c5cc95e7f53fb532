"""Runs `stowaway` as a user does (a process of its own) and records which modules it imported."""
from __future__ import annotations

import json
import subprocess
import sys

# The CLI's main() in a fresh interpreter; at exit, sys.modules goes to the file named first.
RECORDER = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from stowaway.ingest.cli import main
sys.exit(main(sys.argv[1:]))
"""

# What a rescan of an unchanged image has no use for: the notebook and console stack, the analyzers'
# engines, the Docker SDK (two GETs on the engine's socket do), and the layer walk and applier.
HEAVY = ("pandas", "numpy", "plotly", "ipywidgets", "datasette", "yara", "docker", "zstandard", "regex", "univers",
         "cyclonedx", "py7zr", "openpyxl")
LAYER_READING = ("stowaway.ingest.layers", "stowaway.ingest.apply", "stowaway.ingest.squash",
                 "stowaway.ingest.archives")


def run_recording_modules(tmp_path, *args: str, env: dict | None = None, stdin: str | None = None):
    """(completed process, set of module names imported) of `stowaway ARGS`."""
    out = tmp_path / f"modules-{len(list(tmp_path.glob('modules-*')))}.json"
    proc = subprocess.run([sys.executable, "-c", RECORDER, str(out), *args], capture_output=True, text=True,
                          timeout=300, env=env, input=stdin)
    return proc, set(json.loads(out.read_text())) if out.exists() else set()


def heavy(modules: set[str], extra: tuple[str, ...] = ()) -> list[str]:
    """The modules of HEAVY (and EXTRA), and every analyzer implementation, among MODULES."""
    tops = HEAVY + extra
    analyzers = ("stowaway.analyzers.secrets", "stowaway.analyzers.malware", "stowaway.analyzers.inventory",
                 "stowaway.analyzers.settings", "stowaway.analyzers.compliance", "stowaway.analyzers.files",
                 "stowaway.analyzers.vulnerabilities.matchers")
    return sorted(m for m in modules if m.split(".")[0] in tops or m.startswith(analyzers) or m in extra)

"""The Debian security tracker JSON is imported streamed: child processes import generated tracker
files of ~5 MB and ~22 MB, and the peak memory (ru_maxrss over the resident size before the import)
does not grow with the file, while json.load of the larger file alone costs several times its size.
Relative figures from the same run, not timed and not absolute."""
from __future__ import annotations

import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys
from stowaway.ingest.db import connect
from stowaway.analyzers.vulnerabilities import importer
db = connect(sys.argv[2])
importer.import_records(db, [])  # the store exists before the baseline is taken
import gc; gc.collect()
# the baseline is the resident size now (the peak so far may be higher: imports); growth = peak after - it
before = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
if sys.argv[1] == "import":
    result = importer.import_paths(db, [sys.argv[3]])
    print(json.dumps({"growth_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before,
                      "inserted": result.inserted, "skipped": result.skipped, "before_kb": before}))
else:
    doc = json.load(open(sys.argv[3], "rb"))
    print(json.dumps({"growth_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, "inserted": len(doc)}))
"""

RELEASES = ("bullseye", "bookworm", "trixie", "sid")


def _write_tracker(path, packages: int, cves_per_package: int) -> int:
    """Writes a tracker JSON one package at a time (the test itself never holds it); returns the CVEs."""
    text = "x" * 400
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("{")
        for p in range(packages):
            fh.write(("," if p else "") + json.dumps(f"package-{p}") + ":{")
            for c in range(cves_per_package):
                n += 1
                entry = {"description": f"{text} {p} {c}", "scope": "remote", "releases": {
                    r: {"status": "resolved", "fixed_version": f"1.{c}-{p}", "repositories": {r: f"1.{c}-{p}"},
                        "urgency": "low"} for r in RELEASES}}
                fh.write(("," if c else "") + json.dumps(f"CVE-2099-{p * cves_per_package + c}") + ":" + json.dumps(entry))
            fh.write("}")
        fh.write("}")
    return n


def _child(mode, db, path):
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(db), str(path)], capture_output=True, text=True,
                         timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tracker_import_memory_does_not_grow_with_the_file(tmp_path):
    small, large = tmp_path / "small.json", tmp_path / "large.json"
    n_small = _write_tracker(small, packages=300, cves_per_package=20)
    n_large = _write_tracker(large, packages=1200, cves_per_package=20)
    small_kb, large_kb = os.path.getsize(small) // 1024, os.path.getsize(large) // 1024
    assert large_kb > 20_000
    a = _child("import", tmp_path / "a.db", small)
    b = _child("import", tmp_path / "b.db", large)
    assert (a["inserted"], b["inserted"], a["skipped"], b["skipped"]) == (n_small, n_large, 0, 0)
    whole = _child("load", tmp_path / "c.db", large)
    print(f"tracker {small_kb} KB: import peak +{a['growth_kb']} KB; {large_kb} KB: +{b['growth_kb']} KB;"
          f" json.load of the larger: +{whole['growth_kb']} KB")
    # generous: four times the file costs the import less than a third of the extra file size, while
    # holding the parsed file alone costs several times the file
    assert b["growth_kb"] - a["growth_kb"] < (large_kb - small_kb) / 3, (a, b)
    assert whole["growth_kb"] > 2 * large_kb

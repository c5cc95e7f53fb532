"""Import benchmark: N generated OSV records (default 200,000) in an osv.dev-style all.zip, and M
(default 20,000) as one YAML file each, as the PyPA advisory database publishes them.

    .venv/bin/python tests/bench/bench_vuln_import.py [--records 200000] [--yaml-records 20000] [--keep DIR]

Prints the wall time and rate of a first import (all new), a second (all unchanged: the idempotent
path) and the database size; then the same for the YAML directory. Each rate is also given as a ratio
to an anchor measured in the same run on the same bytes — reading and parsing them alone (json.loads
of every zip member; PyYAML's C loader on every YAML file) — so the figure means the same on a loaded
machine. Issue 15's targets: >= 10,000 records/s for JSON, >= 2,000/s for YAML. The records mix the
ecosystems and shapes osv.dev publishes: GHSA with CVSS vectors and several ranges, PYSEC with
versions lists, Debian/Ubuntu/Alpine per-release records.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import zipfile

VECTORS = ["CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N",
           "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N",
           "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"]


def record(i: int, rnd: random.Random) -> dict:
    kind = i % 6
    cve = f"CVE-{2015 + i % 10}-{10000 + i}"
    base = {"schema_version": "1.6.0", "modified": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00.{i % 999:03d}Z",
            "published": f"2023-{1 + i % 12:02d}-01T00:00:00Z", "aliases": [cve],
            "details": "A flaw was found in the parser. " * rnd.randint(3, 12),
            "references": [{"type": "WEB", "url": f"https://example.org/{i}"}]}
    a, b = rnd.randint(0, 9), rnd.randint(0, 30)
    if kind == 0:
        return {**base, "id": f"GHSA-bench-{i}", "summary": f"issue {i}", "severity": [{"type": "CVSS_V3", "score": rnd.choice(VECTORS)}],
                "database_specific": {"severity": "HIGH"},
                "affected": [{"package": {"ecosystem": "Maven", "name": f"org.bench{i % 500}:lib{i % 2000}"},
                              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": f"{a}.0.0"}, {"fixed": f"{a}.{b}.1"}]},
                                         {"type": "ECOSYSTEM", "events": [{"introduced": f"{a + 1}.0.0-RC1"}, {"fixed": f"{a + 1}.1.0"}]}]}]}
    if kind == 1:
        return {**base, "id": f"GHSA-npm-{i}", "severity": [{"type": "CVSS_V3", "score": rnd.choice(VECTORS)}],
                "affected": [{"package": {"ecosystem": "npm", "name": f"bench-pkg-{i % 3000}"},
                              "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": f"{a}.{b}.0"}]}]}]}
    if kind == 2:
        return {**base, "id": f"PYSEC-bench-{i}",
                "affected": [{"package": {"ecosystem": "PyPI", "name": f"Bench_Pkg.{i % 3000}"},
                              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": f"{a}.{b}"}]}],
                              "versions": [f"{a}.{k}" for k in range(b)]}]}
    if kind == 3:
        return {**base, "id": f"DEBIAN-{cve}", "upstream": [cve], "aliases": [],
                "affected": [{"package": {"ecosystem": f"Debian:{rel}", "name": f"src{i % 4000}"},
                              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}] +
                                          ([{"fixed": f"{a}.{b}-1+deb{rel}u1"}] if i % 5 else [])}]}
                             for rel in (11, 12)]}
    if kind == 4:
        return {**base, "id": f"UBUNTU-{cve}", "upstream": [cve], "aliases": [],
                "severity": [{"type": "Ubuntu", "score": "medium"}],
                "affected": [{"package": {"ecosystem": rel, "name": f"src{i % 4000}"},
                              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": f"{a}.{b}-0ubuntu0.1"}]}]}
                             for rel in ("Ubuntu:22.04:LTS", "Ubuntu:24.04:LTS", "Ubuntu:Pro:18.04:LTS")]}
    return {**base, "id": f"ALPINE-{cve}", "upstream": [cve], "aliases": [],
            "affected": [{"package": {"ecosystem": "Alpine:v3.18", "name": f"apk{i % 2000}"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": f"{a}.{b}.0-r1"}]}]}]}


def write_zip(path: str, n: int) -> None:
    rnd = random.Random(42)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for i in range(n):
            rec = record(i, rnd)
            zf.writestr(f"{rec['id']}.json", json.dumps(rec))


def write_yaml(directory: str, n: int) -> None:
    """PyPA's shape: one record a file, times unquoted (YAML timestamps)."""
    import datetime as dt

    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    rnd = random.Random(7)
    os.makedirs(directory, exist_ok=True)
    for i in range(n):
        rec = record(i * 6 + 2, rnd)  # the PYSEC shape
        rec["modified"] = dt.datetime(2024, 1 + i % 12, 1 + i % 28, 10, 0, 0, tzinfo=dt.timezone.utc)
        rec["published"] = dt.datetime(2023, 1 + i % 12, 1, tzinfo=dt.timezone.utc)
        with open(os.path.join(directory, f"{rec['id']}.yaml"), "w", encoding="utf-8") as fh:
            yaml.dump(rec, fh, Dumper=dumper, sort_keys=False)


def anchor_json(zpath: str) -> float:
    """Seconds to read and json.loads every member of the zip: the floor any importer pays."""
    t0 = time.perf_counter()
    with zipfile.ZipFile(zpath) as zf:
        for info in zf.infolist():
            json.loads(zf.read(info))
    return time.perf_counter() - t0


def anchor_yaml(directory: str) -> float:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    t0 = time.perf_counter()
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as fh:
            yaml.load(fh.read(), Loader=loader)
    return time.perf_counter() - t0


def timed_imports(database, path: str, anchor_rate: float, anchor_label: str, target: int) -> None:
    from stowaway.analyzers.vulnerabilities.importer import import_paths

    for label in ("first import (all new)", "second import (all unchanged)"):
        t0, c0 = time.perf_counter(), time.process_time()
        result = import_paths(database, [path])
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
        rate = result.records / took
        # CPU time beside wall time: on a shared machine the wall clock measures the neighbours too
        print(f"  {label}: {result.records:,} records in {took:.1f}s wall = {rate:,.0f} records/s"
              f" ({cpu:.1f}s CPU = {result.records / cpu:,.0f} records/CPU-s; {result.inserted:,} new,"
              f" {result.unchanged:,} unchanged, {result.skipped} skipped)")
        print(f"    ratio to the anchor ({anchor_label}: {anchor_rate:,.0f} records/s): {rate / anchor_rate:.2f};"
              f" target {target:,}/s: {'met' if rate >= target else 'NOT met'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--yaml-records", type=int, default=20_000)
    ap.add_argument("--keep", metavar="DIR", help="write the zip and database here and keep them")
    args = ap.parse_args(argv)

    from stowaway.ingest.db import connect

    work = args.keep or tempfile.mkdtemp(prefix="bench-vuln-import-")
    os.makedirs(work, exist_ok=True)
    zpath, dbpath = os.path.join(work, "all.zip"), os.path.join(work, "bench.db")
    ydir, ydb = os.path.join(work, "pypa"), os.path.join(work, "bench-yaml.db")
    for p in (dbpath, dbpath + "-wal", dbpath + "-shm", ydb, ydb + "-wal", ydb + "-shm"):
        if os.path.exists(p):
            os.remove(p)
    t0 = time.perf_counter()
    write_zip(zpath, args.records)
    print(f"generated {args.records:,} records into {os.path.getsize(zpath) / 1e6:.1f} MB zip in"
          f" {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    if args.yaml_records:
        if os.path.isdir(ydir):
            import shutil

            shutil.rmtree(ydir)
        write_yaml(ydir, args.yaml_records)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1, 5, 15 min)")
    print(f"JSON: {args.records:,} records in one all.zip")
    anchor = args.records / anchor_json(zpath)
    database = connect(dbpath)
    timed_imports(database, zpath, anchor, "read + json.loads", 10_000)
    rows = database.execute("SELECT COUNT(*) FROM advisory_affected").fetchone()[0]
    print(f"  advisory_affected rows: {rows:,}; database {os.path.getsize(dbpath) / 1e6:.0f} MB")
    if args.yaml_records:
        import yaml

        print(f"YAML: {args.yaml_records:,} records, one file each (C loader: {bool(yaml.__with_libyaml__)})")
        anchor = args.yaml_records / anchor_yaml(ydir)
        timed_imports(connect(ydb), ydir, anchor, "read + yaml C loader", 2_000)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1, 5, 15 min)")
    if not args.keep:
        import shutil

        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())

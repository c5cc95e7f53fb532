#!/usr/bin/env python3
"""Benchmark: the plugin's pages on a generated database (1,000 images by default; issue 16 asks for
10,000 images and 1,000,000 findings), against a budget of 300 ms a page (--budget).

    .venv/bin/python tests/bench/bench_datasette_pages.py [--images 1000] [--findings 100] [--db PATH] [--runs 5]

The database is generated once per size, generator version and schema, and kept in --cache-dir
(default ../bench-cache beside the repository): one small image built in code is scanned by the real
pipeline for its layers, then N images (100 repositories x N/100 versions) each get a finished scan
with 150 packages and --findings findings of every kind (all but 19 of them vulnerabilities drawn from
a pool of 400 CVEs), written in bulk (explicit indexes dropped while the rows go in and built after,
the report tables built once at the end); 10,000 images make 1,000,000 findings (about 75 s at load
5, against 19 minutes through one transaction per 500 images with every index in place). Every page is
then requested through datasette.client: --runs times after one warm-up; the median and the worst
wall-clock time are printed, and the median CPU time of the process (Datasette's SQL threads included:
on a loaded machine the wall clock measures the neighbours too), as `stowaway serve` configures
Datasette (suggest_facets off) and, for comparison, as
plain `datasette DB` does (Datasette's defaults: every table page also runs two or three suggestion
queries per column). Exit status 1 when, as served, a page's median exceeds --budget (300 ms),
or when a facet timed out in either configuration.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

SEVERITIES = ["critical", "high", "medium", "low", "negligible", "unknown"]
SEVERITY_WEIGHTS = [3, 12, 30, 35, 10, 10]


GENERATOR_VERSION = 2  # bump when generate() writes different rows: cached databases are keyed by it


def schema_key() -> str:
    """A digest of the schema a new database gets (tables, indexes, triggers, views): a cached database
    made before a schema change is not reused."""
    import hashlib
    import tempfile

    from stowaway.ingest import db as dbm

    with tempfile.TemporaryDirectory() as tmp:
        database = dbm.connect(os.path.join(tmp, "schema.db"))
        sql = [r[0] for r in database.conn.execute("SELECT coalesce(sql, '') FROM sqlite_master ORDER BY type, name")]
        database.conn.close()
    return hashlib.sha1("\n".join(sql).encode()).hexdigest()[:12]


def cached_database(images: int, findings: int, cache_dir: Path) -> Path:
    """The generated database of IMAGES x FINDINGS, made once per generator version and schema and kept
    in CACHE_DIR (written under a temporary name, renamed when complete: an interrupted run leaves no
    half database behind)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"pages-{images}x{findings}-g{GENERATOR_VERSION}-{schema_key()}.db"
    if path.exists():
        print(f"cached database {path}", file=sys.stderr)
        return path
    tmp = path.with_suffix(".tmp")
    for stale in (tmp, Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm")):
        stale.unlink(missing_ok=True)
    generate(str(tmp), images, findings)
    tmp.rename(path)
    return path


def generate(path: str, images: int, findings: int = 100, seed: int = 8, batch: int = 1000) -> None:
    """Writes IMAGES finished scans of FINDINGS findings each in bulk, not one scan at a time through the
    writer: the database's own schema (migrated by ingest), its explicit indexes dropped while the rows go
    in (one executemany per table per BATCH images, no journal) and created again afterwards, the report
    tables and the kept facet counts built once at the end as the read-model migration builds them (the
    counting triggers dropped meanwhile), then ANALYZE."""
    from imagebuilder import ImageBuilder

    from stowaway.ingest import db as dbm
    from stowaway.ingest import readmodel
    from stowaway.ingest.findings import finding_fingerprint
    from stowaway.ingest.model import Finding, Package
    from stowaway.ingest.pipeline import Scanner

    rnd = random.Random(seed)
    layout = Path(path + ".oci")
    img = ImageBuilder()
    img.layer({"etc/os-release": "ID=debian\nVERSION_ID=11\n"}, created_by="/bin/sh -c #(nop) ADD file:base in / ")
    img.layer({"opt/app/README": "app"}, created_by="/bin/sh -c apt-get install -y openssl curl")
    img.layer({"opt/app/app.jar": "jar"}, created_by="/bin/sh -c #(nop) COPY dir:app in /opt/app/ ")
    img.write_oci_layout(layout, ref="bench/seed:1")
    database = dbm.connect(path)
    Scanner(database, {}, progress=False, analyzer_names=["os-release", "files"]).run([f"oci:{layout}"])
    conn = database.conn
    conn.execute("PRAGMA cache_size = -262144")  # 256 MiB
    conn.execute("PRAGMA journal_mode = OFF")  # a benchmark's database: rebuilt, never repaired
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA foreign_keys = OFF")  # scans and images name each other; the rows are made consistent
    indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").fetchall()
    for name, _sql in indexes:
        conn.execute(f"DROP INDEX [{name}]")
    # the base tables' kept facet counts: counted once at the end (rebuild_all) instead of row by row
    triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'facet_counts_%'"
                            ).fetchall()
    for name, _sql in triggers:
        conn.execute(f"DROP TRIGGER [{name}]")
    layer_ids = [r[0] for r in conn.execute("SELECT layer_id FROM image_layers WHERE image_id = 1 ORDER BY position")]
    commands = [r[0] for r in conn.execute("SELECT created_by FROM image_layers WHERE image_id = 1 ORDER BY position")]
    pool = []
    for n in range(400):
        sev = rnd.choices(SEVERITIES, SEVERITY_WEIGHTS)[0]
        score = {"critical": 9.8, "high": 7.5, "medium": 5.3, "low": 3.1}.get(sev)
        pool.append((f"CVE-{2018 + n % 7}-{10000 + n}", sev, score, rnd.random() < 0.6))
    names = [f"lib{n}" for n in range(600)]
    vulns = max(0, findings - 19)  # 5 malware, 5 secrets, 7 checks, 1 compliance, 1 base image
    next_id = {t: (conn.execute(f"SELECT coalesce(MAX(id), 0) FROM {t}").fetchone()[0] + 1)
               for t in ("scans", "images", "packages", "findings")}
    sql = {
        "scans": "scans (id, source, reference, status, started_at, finished_at, seconds, image_id)",
        "images": "images (id, reference, repository, tag, manifest_digest, platform, source, size, created,"
                  " os_family, os_version, os_name, env, last_scan_id, first_seen)",
        "image_layers": "image_layers (image_id, position, layer_id, created_by)",
        "packages": "packages (id, scan_id, image_id, ecosystem, name, version, path, layer_index, purl,"
                    " os_owned, vulnerability_count)",
        "findings": "findings (id, scan_id, image_id, kind, severity, severity_rank, title, rule, status, path,"
                    " layer_index, visible, package_id, fingerprint)",
        "file_stats": "file_stats (scan_id, image_id, total_files, total_size, directories, symlinks)",
        "largest_files": "largest_files (scan_id, rank, path, size, layer_index)",
        "layer_stats": "layer_stats (scan_id, layer_index, layer_id, files, size, visible_files, visible_size,"
                       " whiteouts)",
    }
    t0 = time.perf_counter()
    shown = t0
    conn.execute("BEGIN")
    for first in range(0, images, batch):
        rows: dict[str, list] = {}
        details: dict[str, list[dict]] = {}

        def add(table, *values):
            rows.setdefault(table, []).append(values)

        for i in range(first, min(images, first + batch)):
            repo, version = f"bench/app{i % 100}", f"{i // 100}.0"
            scan_id, image_id = next_id["scans"], next_id["images"]
            next_id["scans"] += 1
            next_id["images"] += 1
            add("scans", scan_id, f"oci:{layout}", f"{repo}:{version}", "done", dbm.now(), dbm.now(), 1.0, image_id)
            add("images", image_id, f"{repo}:{version}", repo, version, f"sha256:{i:064x}", "linux/amd64",
                f"oci:{layout}", rnd.randint(5, 900) << 20, f"2024-{1 + i // 100 % 12:02d}-01T00:00:00Z", "debian",
                "11", "Debian GNU/Linux 11 (bullseye)", '["PATH=/usr/bin"]', scan_id, dbm.now())
            for p, (lid, cmd) in enumerate(zip(layer_ids, commands)):
                add("image_layers", image_id, p, lid, cmd)
            packages = [Package("deb", name, f"1.{rnd.randint(0, 9)}", "/var/lib/dpkg/status",
                                layer_index=rnd.randint(0, 2), purl=f"pkg:deb/debian/{name}@1")
                        for name in rnd.sample(names, 150)]
            found = []
            for vid, sev, score, fixed in rnd.sample(pool, vulns):
                pkg = rnd.choice(packages)
                found.append((Finding("vulnerability", f"{vid} in {pkg.name}", sev, path=pkg.path,
                                      layer_index=pkg.layer_index, rule=vid, package=pkg.key, detail={
                                          "vulnerability_id": vid, "aliases": [f"GHSA-{vid[-5:]}"],
                                          "package_name": pkg.name, "ecosystem": "deb",
                                          "installed_version": pkg.version, "fixed_version": "9.9" if fixed else "",
                                          "cvss_score": score, "published": "2023-01-01",
                                          "description": "generated"}), pkg))
            for k in range(5):
                found.append((Finding("malware", "test file", "high", path=f"/tmp/m{k}", layer_index=2,
                                      rule="EICAR_Test_File", detail={"rule": "EICAR_Test_File"}), None))
                found.append((Finding("secret", "token", "high", path=f"/opt/app/.env{k}", layer_index=2,
                                      rule="github-pat", detail={"rule_id": "github-pat", "line": k,
                                                                 "masked": "ghp_Y5…uXov"}), None))
            for k in range(7):
                result = "fail" if k < 4 else "pass"
                found.append((Finding("unsafe_setting", f"check {k}", rnd.choice(SEVERITIES[:4]),
                                      path="/etc/ssh/sshd_config", layer_index=1, rule=f"ssh.check{k}", status=result,
                                      detail={"category": "ssh", "check_id": f"ssh.check{k}", "result": result,
                                              "target": "/etc/ssh/sshd_config", "description": "d",
                                              "suggestion": "s"}), None))
            found.append((Finding("compliance", "nmap", "medium", path="/usr/bin/nmap", layer_index=1,
                                  rule="forbid:nmap", detail={"name": "nmap", "version": "7", "rule": "forbid:nmap"}),
                          None))
            found.append((Finding("base_image", "base", "unknown", detail={"approved": i % 3 != 0}), None))
            vuln_counts: dict[tuple, int] = {}
            for f, pkg in found:
                if pkg is not None:
                    vuln_counts[pkg.key] = vuln_counts.get(pkg.key, 0) + 1
            pkg_ids = {}
            for p in packages:
                pkg_ids[p.key] = next_id["packages"]
                next_id["packages"] += 1
                add("packages", pkg_ids[p.key], scan_id, image_id, p.ecosystem, p.name, p.version, p.path,
                    p.layer_index, p.purl, 1, vuln_counts.get(p.key, 0))
            for f, pkg in found:
                fid = next_id["findings"]
                next_id["findings"] += 1
                add("findings", fid, scan_id, image_id, f.kind, f.severity,
                    dbm.SEVERITY_RANK.get(f.severity, len(dbm.SEVERITY_RANK)), f.title, f.rule, f.status, f.path,
                    f.layer_index, 1, pkg_ids.get(f.package) if f.package else None,
                    finding_fingerprint(f, pkg, repo))
                details.setdefault(dbm.DETAIL_TABLES[f.kind], []).append({"finding_id": fid, **f.detail})
            add("file_stats", scan_id, image_id, 5000, 1 << 27, 300, 40)
            for k in range(50):
                add("largest_files", scan_id, k, f"/opt/f{k}", 1 << (20 - k // 5), 2)
            for p in range(3):
                add("layer_stats", scan_id, p, layer_ids[p], 10, 100, 10, 100, 0)
        for table, target in sql.items():
            width = len(rows[table][0])
            conn.executemany(f"INSERT INTO {target} VALUES ({', '.join('?' * width)})", rows[table])
        for table, dicts in details.items():
            dbm.insert_rows(conn, table, dicts[:1])  # adds any column the table lacks
            keys = list(dicts[0])
            conn.executemany(f"INSERT INTO [{table}] ({', '.join(f'[{k}]' for k in keys)})"
                             f" VALUES ({', '.join('?' * len(keys))})",
                             [[dbm._cell(d.get(k)) for k in keys] for d in dicts[1:]])
        if time.perf_counter() - shown > 10:
            shown = time.perf_counter()
            print(f"  {min(images, first + batch)}/{images} images, {shown - t0:.0f} s", file=sys.stderr, flush=True)
    t1 = time.perf_counter()
    # the report tables read findings by scan and image: those indexes first, the rest after the build
    early = {"idx_findings_scan", "idx_packages_scan", "idx_images_last_scan"}
    for name, sql_text in indexes:
        if name in early:
            conn.execute(sql_text)
    conn.execute("ANALYZE")
    readmodel.rebuild_all(conn)
    t2 = time.perf_counter()
    for name, sql_text in indexes:
        if name not in early:
            conn.execute(sql_text)
    for _name, sql_text in triggers:
        conn.execute(sql_text)
    conn.execute("COMMIT")
    t3 = time.perf_counter()
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode = WAL")
    database.conn.close()
    print(f"generated {images} images ({findings} findings each): rows {t1 - t0:.1f} s, report tables"
          f" {t2 - t1:.1f} s, indexes {t3 - t2:.1f} s, ANALYZE {time.perf_counter() - t3:.1f} s -> {path}",
          file=sys.stderr)


def pages(name: str, vuln: str) -> list[str]:
    t = f"/{name}"
    return [
        "/-/stowaway/images", "/-/stowaway/images?latest=1", "/-/stowaway/images?sort=size&q=app7",
        "/-/stowaway/images?repository=bench/app42", "/-/stowaway/images?registry=&base=unknown",
        "/-/stowaway/images.json?_facets=1", "/-/stowaway/tasks",
        "/-/stowaway/image/500", "/-/stowaway/image/bench/app42:3.0", f"/-/stowaway/vulnerability/{vuln}",
        "/-/stowaway/dashboard", "/-/stowaway/dashboard?latest=1&trend=registry",
        "/-/stowaway/dashboard?repository=bench/app7", "/-/stowaway/settings",
        "/-/stowaway/image/500?tab=vulnerabilities", "/-/stowaway/image/500?tab=settings",
        "/-/stowaway/image/500?tab=software", "/-/stowaway/image/500?tab=secrets",
        f"{t}/image_overview", f"{t}/image_overview?latest_version=1",
        f"{t}/vulnerabilities_view", f"{t}/vulnerabilities_view?severity=critical",
        f"{t}/vulnerabilities_view?severity=low", f"{t}/vulnerabilities_view?fixed_version__notblank=1",
        f"{t}/vulnerabilities_view?image_id=500", f"{t}/vulnerabilities_view?_facet_layer=layer_index",
        f"{t}/findings_report", f"{t}/findings_report?suppressed=0&_facet_layer=layer_index",
        f"{t}/findings?_facet_severity=severity&_facet_kind=kind", f"{t}/packages",
        f"{t}/unsafe_settings_view", f"{t}/secrets_view", f"{t}/packages_view",
        f"{t}/findings_report.sarif?image_id=500&_size=max", f"{t}/packages_view.cyclonedx?image_id=500&_size=max",
        "/-/stowaway/export/vulnerabilities.csv?image=500", "/-/stowaway/export/baseline.xlsx?image=500",
    ]


async def measure(path: str, runs: int, settings: dict):
    from datasette.app import Datasette

    ds = Datasette(files=[path], settings=settings)
    name = Path(path).stem
    db = ds.get_database(name)
    vuln = (await db.execute("SELECT vulnerability_id FROM vulnerability_details GROUP BY vulnerability_id"
                             " ORDER BY COUNT(*) DESC LIMIT 1")).first()[0]
    limit = ds.setting("facet_time_limit_ms")
    out = []
    for page in pages(name, vuln):
        r = await ds.client.get(page)  # warm-up: startup, page cache, statement cache
        if r.status_code != 200:  # e.g. a query past Datasette's time limit: a 500, counted as over
            out.append((page, float("inf"), float("inf"), [f"HTTP {r.status_code}"], float("inf")))
            continue
        times, cpu = [], []
        for _ in range(runs):
            t0, c0 = time.perf_counter(), time.process_time()  # the SQL threads are this process's too
            r = await ds.client.get(page)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        timed_out = []
        if "/-/stowaway/" not in page and "." not in page.rsplit("/", 1)[-1].split("?")[0]:
            j = await ds.client.get(page.replace("?", ".json?", 1) if "?" in page else page + ".json")
            timed_out = j.json().get("facets_timed_out") or []
        out.append((page, statistics.median(times), max(times), timed_out, statistics.median(cpu)))
    return limit, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--db", help="measure this database (generated there if it does not exist) instead of the cached one")
    ap.add_argument("--cache-dir", type=Path,
                    default=Path(os.environ.get("STOWAWAY_BENCH_CACHE") or ROOT.parent / "bench-cache"),
                    help="where generated databases are kept between runs, keyed by size, generator version and"
                         " schema (default $STOWAWAY_BENCH_CACHE or ../bench-cache beside the repository)")
    ap.add_argument("--findings", type=int, default=100, help="findings per image (default 100: 10,000 images"
                    " make 1,000,000 findings)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--budget", type=float, default=300, help="ms a page's median may take (issue 16: 300)")
    args = ap.parse_args()
    if args.db:
        path = args.db
        if not os.path.exists(path):
            generate(path, args.images, args.findings)
    else:
        path = str(cached_database(args.images, args.findings, args.cache_dir))
    load = os.getloadavg()[0]
    facet_limit, served = asyncio.run(measure(path, args.runs, {"suggest_facets": False}))
    limit = args.budget
    _, plain = asyncio.run(measure(path, args.runs, {}))
    images = __import__("sqlite3").connect(path).execute("SELECT COUNT(*), (SELECT COUNT(*) FROM findings),"
                                                         " (SELECT COUNT(*) FROM packages) FROM images").fetchone()
    print(f"{images[0]} images, {images[1]} findings, {images[2]} packages; facet_time_limit_ms={limit};"
          f" ms, median and worst of {args.runs} runs")
    print(f"{'page':<66} {'served':>8} {'worst':>7} {'CPU':>7} {'plain datasette':>16}")
    slow, slow_cpu = [], []
    for (page, median, worst, timed_out, cpu), (_, plain_median, _, plain_timed_out, _) in zip(served, plain):
        if cpu > limit or timed_out:
            slow_cpu.append(page)
        flag = ""
        if median > limit or timed_out or plain_timed_out:
            slow.append(page)
            flag = "  OVER" + (f" (facets timed out or failed: {', '.join(timed_out + plain_timed_out)})"
                               if timed_out or plain_timed_out else "")
        page = page.replace(f"/{Path(path).stem}/", "/DB/")
        print(f"{page:<66} {median:>8.1f} {worst:>7.1f} {cpu:>7.1f} {plain_median:>16.1f}{flag}")
    print(f"load {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} CPUs")
    print(f"{len(served) - len(slow)}/{len(served)} pages within {limit:.0f} ms as served (wall clock);"
          f" {len(served) - len(slow_cpu)}/{len(served)} within {limit:.0f} ms of CPU (this process's, SQL included:"
          f" what the page costs, whatever the machine's load)")
    print("no facet timed out" if not any(r[3] for r in served + plain) else "some facets timed out or pages failed")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())

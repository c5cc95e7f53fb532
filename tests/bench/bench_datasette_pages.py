#!/usr/bin/env python3
"""Benchmark: every page of the plugin on a generated database (1,000 images by default; issue 16 asks for
10,000 images and 1,000,000 findings), against a budget of 300 ms a page (--budget).

    .venv/bin/python tests/bench/bench_datasette_pages.py [--images 1000] [--findings 100] [--db PATH] [--runs 5]

The database is generated once per size, generator version and schema, and kept in --cache-dir
(default ../bench-cache beside the repository): one small image built in code is scanned by the real
pipeline for its layers, then N images (100 repositories x N/100 versions) each get a finished scan
with 150 packages and --findings findings of every kind (all but 19 of them vulnerabilities drawn from
a pool of 400 CVEs), written in bulk (explicit indexes dropped while the rows go in and built after,
the report tables and kept counts built once at the end), with the scan tasks that wrote them (50
images each, every 25th item failed, and one task of 1,000 images: the console's largest); 10,000
images make 1,000,000 findings (about 12 minutes at load 8).

The pages: every GET route the plugin registers (checked against console.ROUTES and routes.ROUTES;
the POST-only ones, which write or start tasks, are named, not measured) with the variants its pages
link to (the image list's sorts and filters, all nine report tabs, the dashboard's filters and trends,
tasks, exports of one image, the SBOMs, the assets); Datasette's home, database and row pages; every
table of the plugin's metadata with its default facets; each of the plugin's facets on each table column
it is made for; the most populous value of every facet those pages show (what clicking it selects); and
every link the plugin's own pages render (one of each shape: ids and references aside). Each is
requested through datasette.client --runs times after one warm-up, as `stowaway serve` configures
Datasette (suggest_facets off); the median and the worst wall-clock time and the median CPU time of
the process (Datasette's SQL threads included: on a loaded machine the wall clock measures the
neighbours too) are printed; the dashboard uncached (it keeps its numbers per state of the file: as
after a write). With the table pages also as plain `datasette DB` serves them (Datasette's defaults:
two or three facet-suggestion queries per column), one run each (--no-plain skips it).

Exports of many images' rows (every image, a repository, the latest of each, a table's filters; SARIF and
CycloneDX of a table's whole selection; Datasette's `_stream=on` CSV) cannot take 300 ms and are not
pages: each is asked for once and printed separately with its rows, size, throughput and the process's
peak RSS (--no-bulk skips them). Exit status 1 when, as served, a page's median exceeds --budget, or
when a facet timed out or a page failed.
"""
from __future__ import annotations

import argparse
import asyncio
import html as htmllib
import os
import random
import re
import resource
import statistics
import sys
import time
import urllib.parse
from pathlib import Path

import bench_cache

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

SEVERITIES = ["critical", "high", "medium", "low", "negligible", "unknown"]
SEVERITY_WEIGHTS = [3, 12, 30, 35, 10, 10]


GENERATOR_VERSION = 3  # bump when generate() writes different rows: cached databases are keyed by it
TASK_SIZE = 50  # images per generated scan task; one more task of BIG_TASK images (the console's most)
BIG_TASK = 1000


def cached_database(images: int, findings: int, cache_dir: Path) -> Path:
    """The generated database of IMAGES x FINDINGS, made once per generator version and schema."""
    return bench_cache.cached_database(cache_dir, f"pages-{images}x{findings}-g{GENERATOR_VERSION}",
                                       lambda path: generate(path, images, findings))


def generate(path: str, images: int, findings: int = 100, seed: int = 8, batch: int = 1000) -> None:
    """Writes IMAGES finished scans of FINDINGS findings each in bulk, not one scan at a time through the
    writer: the database's own schema (migrated by ingest), its explicit indexes dropped while the rows go
    in (one executemany per table per BATCH images, no journal) and created again afterwards, the report
    tables and the kept facet counts built once at the end as the read-model migration builds them (the
    counting triggers dropped meanwhile), then the statistics the writes keep (sampled)."""
    from imagebuilder import ImageBuilder

    from stowaway.ingest import db as dbm
    from stowaway.ingest import readmodel
    from stowaway.ingest import tasks as tasks_module
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
    tasks_module.ensure(database)
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
        "scans": "scans (id, source, reference, status, started_at, finished_at, seconds, image_id, task_id)",
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
    first_task = conn.execute("SELECT coalesce(MAX(id), 0) + 1 FROM tasks").fetchone()[0]
    scan_of: list[int] = []
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
            add("scans", scan_id, f"oci:{layout}", f"{repo}:{version}", "done", dbm.now(), dbm.now(), 1.0, image_id,
                first_task + i // TASK_SIZE)
            scan_of.append(scan_id)
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
    _tasks(conn, images, first_task, scan_of)
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
    # the statistics a database written by Stowaway holds: sampled by the writes (readmodel.keep_statistics),
    # not the full ANALYZE above that planned the report tables' build
    conn.execute("DELETE FROM sqlite_stat1")
    readmodel.keep_statistics(conn, check_all=True)
    conn.commit()
    conn.execute("PRAGMA journal_mode = WAL")
    database.conn.close()
    print(f"generated {images} images ({findings} findings each): rows {t1 - t0:.1f} s, report tables"
          f" {t2 - t1:.1f} s, indexes {t3 - t2:.1f} s, statistics {time.perf_counter() - t3:.1f} s -> {path}",
          file=sys.stderr)


def _tasks(conn, images: int, first: int, scan_of: list[int]) -> None:
    """The scan tasks that wrote the images, TASK_SIZE images each (every 25th item failed with a one-line
    error), and one more finished task of BIG_TASK items (the console's largest scan) over the first
    images, newest: the tasks page lists 100 tasks, a task's page every item with its scans."""
    import json

    from stowaway.ingest import tasks as tasks_module

    now = tasks_module.iso(time.time())
    tasks, items = [], []
    groups = [(first + k, list(range(k * TASK_SIZE, min(images, (k + 1) * TASK_SIZE)))) for k in
              range((images + TASK_SIZE - 1) // TASK_SIZE)]
    groups.append((first + len(groups), list(range(min(images, BIG_TASK)))))
    for task_id, members in groups:
        failed = [i for i in members if i % 25 == 24]
        tasks.append((task_id, "manual" if task_id % 7 else "scheduled", "done", None, 2, "local", len(members),
                      len(members) - len(failed), len(failed), 0, 0, 2, 1.0, now, now, now))
        for i in members:
            bad = i % 25 == 24
            items.append((task_id, f"bench/app{i % 100}:{i // 100}.0", "", "failed" if bad else "done", 1, 0,
                          time.time(), time.time(), None if bad else 1, "[]" if bad else json.dumps([scan_of[i]]),
                          "pull: manifest unknown: the registry has no such tag" if bad else None))
    conn.executemany("INSERT INTO tasks (id, kind, state, risk_types, concurrency, executor, total, done, failed,"
                     " waiting, running, max_running, progress, created_at, started_at, finished_at)"
                     " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", tasks)
    conn.executemany("INSERT INTO task_items (task_id, source, registry, state, attempts, not_before, started_ts,"
                     " finished_ts, images, scan_ids, error) VALUES (?,?,?,?,?,?,?,?,?,?,?)", items)


# POST-only routes (they start tasks or write): measured by no GET
POST_ONLY = re.compile(r"^/-/stowaway/(scan|sync|image/.+/rescan|finding/\d+/ignore|task/\d+/cancel)$")


def route_coverage(measured: list[str]) -> tuple[list[str], list[str]]:
    """(GET routes of the plugin no measured page reaches, POST-only routes): every route the plugin
    registers (console.ROUTES, routes.ROUTES) is asked for, or named here."""
    from stowaway.datasette_plugin import console, routes

    missed, post = [], []
    for pattern, view in console.ROUTES + routes.ROUTES:
        if view.__name__.endswith("_action"):
            post.append(pattern)
        elif not any(re.match(pattern, page.split("?")[0]) for page in measured):
            missed.append(pattern)
    return missed, post


async def targets(ds, name: str) -> dict:
    """The ids the pages are asked about: the most common vulnerability (in about 2,000 images), image 500,
    the biggest and a small task, rows of the big tables."""
    db = ds.get_database(name)

    async def one(sql):
        return (await db.execute(sql)).first()[0]

    image = await one("SELECT id FROM images ORDER BY id LIMIT 1 OFFSET (SELECT min(499, COUNT(*) / 2) FROM images)")
    return {
        "image": image, "ref": await one(f"SELECT reference FROM images WHERE id = {image}"),
        "vuln": await one("SELECT vulnerability_id FROM vulnerability_details GROUP BY vulnerability_id"
                          " ORDER BY COUNT(*) DESC LIMIT 1"),
        "scan": await one(f"SELECT last_scan_id FROM images WHERE id = {image}"),
        "big_task": await one("SELECT id FROM tasks ORDER BY total DESC, id DESC LIMIT 1"),
        "task": await one("SELECT id FROM tasks ORDER BY id LIMIT 1"),
        "vuln_row": await one(f"SELECT rowid FROM vulnerabilities_view WHERE image_id = {image} LIMIT 1"),
        "finding": await one(f"SELECT id FROM findings WHERE image_id = {image} LIMIT 1"),
        "package": await one(f"SELECT package FROM vulnerabilities_view WHERE image_id = {image} LIMIT 1"),
    }


def seeds(name: str, t: dict) -> list[str]:
    """Every GET route the plugin registers (datasette_plugin/console.py and routes.py), with the variants
    its pages link to, and Datasette's own pages the plugin changes (home, database, every table of its
    metadata with its default facets, row pages, the SARIF and CycloneDX renderers)."""
    from stowaway.datasette_plugin import config, queries, report_page

    d = f"/{name}"
    out = ["/-/stowaway/", "/", d]
    out += ["/-/stowaway/images", "/-/stowaway/images?latest=1", "/-/stowaway/images?q=app7",
            "/-/stowaway/images?repository=bench/app42", "/-/stowaway/images?registry=", "/-/stowaway/images?os=Debian"
            " GNU/Linux 11 (bullseye)", "/-/stowaway/images?base=unknown", "/-/stowaway/images?base=not approved",
            "/-/stowaway/images?registry=&base=unknown", "/-/stowaway/images?page=100", "/-/stowaway/images?page=50&latest=1"]
    out += [f"/-/stowaway/images?sort={sort}" for sort in queries.IMAGE_SORTS]
    out += ["/-/stowaway/images.json", "/-/stowaway/images.json?_facets=1", "/-/stowaway/images.json?latest=1&_facets=1",
            "/-/stowaway/images.json?size=10000"]
    out += ["/-/stowaway/tasks", "/-/stowaway/tasks.json", f"/-/stowaway/task/{t['big_task']}",
            f"/-/stowaway/task/{t['big_task']}.json", f"/-/stowaway/task/{t['task']}", f"/-/stowaway/task/{t['task']}.json"]
    out += [f"/-/stowaway/image/500?tab={tab}" for tab in report_page.TAB_KEYS]
    out += ["/-/stowaway/image/500", "/-/stowaway/image/bench/app42:3.0", "/-/stowaway/image/500?tab=vulnerabilities&page=2",
            "/-/stowaway/image/500?tab=vulnerabilities&severity=high&fix=yes", "/-/stowaway/image/500?tab=software&page=2",
            "/-/stowaway/image/500/sbom.cyclonedx.json", "/-/stowaway/image/500/sbom.spdx.json"]
    out += [f"/-/stowaway/vulnerability/{t['vuln']}"]
    out += ["/-/stowaway/dashboard", "/-/stowaway/dashboard?latest=1", "/-/stowaway/dashboard?trend=registry",
            "/-/stowaway/dashboard?latest=1&trend=registry", "/-/stowaway/dashboard?repository=bench/app7",
            "/-/stowaway/dashboard?registry="]
    out += ["/-/stowaway/settings"]
    out += [f"/-/stowaway/export/{report}.{fmt}?image=500" for report in ("vulnerabilities", "baseline")
            for fmt in ("csv", "xlsx")]
    out += ["/-/stowaway/stowaway.css", "/-/stowaway/stowaway.js", "/-/stowaway/plotly.min.js"]
    tables = [table for table, cfg in config.TABLES.items() if not cfg.get("hidden")]
    out += [f"{d}/{table}" for table in tables]
    out += [f"{d}/largest_files?scan_id={t['scan']}", f"{d}/layer_stats?scan_id={t['scan']}", f"{d}/scans?image_id=500",
            f"{d}/tasks", f"{d}/task_items?task_id={t['big_task']}"]
    out += [f"{d}/vulnerabilities_view/{t['vuln_row']}", f"{d}/findings/{t['finding']}", f"{d}/images/500"]
    # the per-image links of the report page and the image list, and an image's one package
    out += [f"{d}/{view}?image_id=500" for view in ("vulnerabilities_view", "findings_report", "packages_view",
                                                   "unsafe_settings_view", "secrets_view", "malware_view",
                                                   "compliance_view", "base_image_view")]
    # the fix facet's old links (bookmarks): Datasette's blank test on fixed_version, now fix_available
    out += [f"{d}/vulnerabilities_view?fixed_version__notblank=1", f"{d}/vulnerabilities_view?fixed_version__isblank=1"]
    out += [f"{d}/vulnerabilities_view?image_id=500&package={t['package']}",
            f"{d}/vulnerabilities_view?vulnerability_id={t['vuln']}"]
    for table, fmt in (("findings_report", "sarif"), ("vulnerabilities_view", "sarif"), ("unsafe_settings_view", "sarif"),
                       ("secrets_view", "sarif"), ("malware_view", "sarif"), ("compliance_view", "sarif"),
                       ("packages_view", "cyclonedx")):
        out.append(f"{d}/{table}.{fmt}?image_id=500&_size=max")
    out += [f"{d}/vulnerabilities_view.json?image_id=500&_size=max", f"{d}/vulnerabilities_view.csv?image_id=500&_size=max"]
    return [p.replace("=500", f"={t['image']}").replace("/500", f"/{t['image']}").replace("bench/app42:3.0", t["ref"])
            for p in out]


async def suggested_facets(ds, name: str) -> list[str]:
    """Each of the plugin's facets on each column of each table it is made for (the facets a table does not
    show by default: what `?_facet_TYPE=COLUMN` adds)."""
    from stowaway.datasette_plugin import config, facets

    db = ds.get_database(name)
    out = []
    for table, cfg in config.TABLES.items():
        if cfg.get("hidden"):
            continue
        columns = await db.table_columns(table)
        shown = {str(f) if isinstance(f, str) else next(iter(f.values())) for f in cfg.get("facets", [])}
        for klass in facets.FACET_CLASSES:
            for column in klass.column_hint:
                if column in columns and column not in shown:
                    out.append(f"/{name}/{table}?_facet_{klass.type}={column}")
    return out


# arguments whose value changes what a page costs (how many rows it selects, which tab it renders)
VALUE_ARGS = {"tab", "trend", "latest", "latest_version", "severity", "kind", "fix", "fix_available", "suppressed",
              "result__notin", "fixed_version__notblank", "fixed_version__isblank", "_sort", "_sort_desc"}


def _shape(page: str, name: str) -> str:
    """Pages that differ only in ids, references or the value of a filter cost about the same: one of
    each is measured (the seeds are all measured)."""
    path, _, query = page.partition("?")
    path = path.replace(f"/{name}/", "/DB/").replace(f"/{name}", "/DB")
    path = re.sub(r"/-/stowaway/image/(?!.*/sbom)[^?]+", "/-/stowaway/image/REF", path)
    path = re.sub(r"/-/stowaway/vulnerability/[^?]+", "/-/stowaway/vulnerability/ID", path)
    path = re.sub(r"/\d+", "/N", path)
    if not query:
        return path
    args = sorted((k, v if k in VALUE_ARGS else "*")
                  for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True) if k != "_extra")
    return path + "?" + urllib.parse.urlencode(args)


def is_bulk(page: str) -> bool:
    """An export of many images' rows (every image, a repository, the latest of each, a table's filters; the
    SARIF and CycloneDX renderers read every row a table page selects, Datasette's CSV with `_stream=on`
    every row): measured once, with its throughput, not against the page budget."""
    path, _, query = page.partition("?")
    args = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    if path.startswith("/-/stowaway/export/"):
        return "image" not in args and "image_id" not in args
    if path == "/-/stowaway/images.json":  # the API's largest page: 10,000 images
        return int(args.get("size") or 0) > 1000
    if path.startswith("/-/") or path.count("/") != 2:  # a row's own SARIF is one row
        return False
    last = path.rsplit("/", 1)[-1]
    return (last.endswith((".sarif", ".cyclonedx")) and "image_id" not in args) or \
        (last.endswith(".csv") and "_stream" in args)


def _clean(href: str) -> str:
    """A link without the default column list the plugin adds to table pages by itself (finish.py)."""
    path, _, query = htmllib.unescape(href).replace("http://localhost", "").partition("?")
    pairs = [(k, v) for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)
             if k not in ("_col", "_nocol", "_extra")]
    if path.endswith(".json") and "_extra" in query:  # a facet's link from the JSON asked for its results
        path = path[:-len(".json")]
    return path + ("?" + urllib.parse.urlencode(pairs) if pairs else "")


def links(html: str) -> list[str]:
    """The same-site links of a page of the plugin (what a user of it can click)."""
    out = []
    for href in re.findall(r'href="([^"#]+)"', html):
        href = _clean(href)
        if href.startswith("/") and not href.startswith(("//", "/-/static", "/-/stowaway/plotly")) \
                and not POST_ONLY.match(href.split("?")[0]):
            out.append(href)
    return out


async def collect(ds, name: str, t: dict) -> tuple[list[str], list[str]]:
    """(pages, bulk exports): the seeds, each plugin facet on each table, the most populous value of every
    facet a table page shows (what clicking it selects), and every link the plugin's pages and the report
    tables render (one per shape)."""
    pages = seeds(name, t) + await suggested_facets(ds, name)
    seen = {_shape(p, name) for p in pages}
    crawl = [p for p in pages if not is_bulk(p) and not p.endswith((".css", ".js"))]
    for page in crawl:
        found = []
        if page.startswith("/-/stowaway/"):  # the links the plugin's own pages render
            r = await ds.client.get(page)
            if r.status_code == 200 and "html" in r.headers.get("content-type", ""):
                found = links(r.text)
        table = re.match(rf"^/{re.escape(name)}/(\w+)(\?_facet_\w+=\w+)?$", page)
        if table:  # the most populous value of each facet the table page shows: what clicking it selects
            j = await ds.client.get(page.replace(f"/{table.group(1)}", f"/{table.group(1)}.json", 1)
                                    + ("&" if "?" in page else "?") + "_extra=facet_results")
            results = j.json().get("facet_results", {}) if j.status_code == 200 else {}
            results = results.get("results", results) if "timed_out" in results else results
            for facet in results.values():
                values = [v for v in facet.get("results", []) if not v.get("selected")]
                if values:
                    found.append(_clean(max(values, key=lambda v: v["count"])["toggle_url"]))
        for link in found:
            shape = _shape(link, name)
            if shape not in seen:
                seen.add(shape)
                pages.append(link)
    bulk = [p for p in pages if is_bulk(p)]
    bulk += [f"/-/stowaway/export/{report}.{fmt}" for report in ("vulnerabilities", "baseline") for fmt in ("csv", "xlsx")
             if f"/-/stowaway/export/{report}.{fmt}" not in bulk]
    bulk += [p for p in (f"/{name}/findings_report.sarif", f"/{name}/packages_view.cyclonedx",
                         f"/{name}/vulnerabilities_view.csv?_stream=on") if p not in bulk]
    return [p for p in pages if not is_bulk(p)], list(dict.fromkeys(bulk))


async def timed(ds, page: str, runs: int, before=None):
    """(status, median ms, worst ms, timed-out facets, median CPU ms) of RUNS requests after one warm-up."""
    r = await ds.client.get(page)  # warm-up: startup, page cache, statement cache
    if r.status_code not in (200, 302):  # e.g. a query past Datasette's time limit: a 500, counted as over
        return r.status_code, float("inf"), float("inf"), [f"HTTP {r.status_code}"], float("inf")
    times, cpu = [], []
    for _ in range(runs):
        if before:
            before()
        t0, c0 = time.perf_counter(), time.process_time()  # the SQL threads are this process's too
        r = await ds.client.get(page)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    timed_out = []
    path = page.split("?")[0]
    if not path.startswith("/-/") and path.count("/") == 2 and "." not in path.rsplit("/", 1)[-1]:
        j = await ds.client.get(page.replace("?", ".json?", 1) if "?" in page else page + ".json")
        timed_out = j.json().get("facets_timed_out") or [] if j.status_code == 200 else [f"HTTP {j.status_code}"]
    return r.status_code, statistics.median(times), max(times), timed_out, statistics.median(cpu)


def _uncached():
    from stowaway.datasette_plugin import queries

    queries._DASHBOARD_CACHE.clear()


async def measure(path: str, runs: int, settings: dict, only: list[str] | None = None, bulk: bool = True):
    """The pages as served with SETTINGS: (pages, bulk, results, bulk results)."""
    from datasette.app import Datasette

    ds = Datasette(files=[path], settings=settings)
    name = Path(path).stem
    t = await targets(ds, name)
    if only is None:
        pages, bulk_pages = await collect(ds, name, t)
    else:
        pages, bulk_pages = only, []
    out = []
    for page in pages:
        # the dashboard keeps its numbers per state of the file: measured as after a write, uncached
        out.append((page, *await timed(ds, page, runs, _uncached if "/dashboard" in page else None)))
    bulk_out = []
    for page in bulk_pages if bulk else []:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0, c0 = time.perf_counter(), time.process_time()
        r = await ds.client.get(page)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        bulk_out.append((page, r.status_code, rows_in(page, r), len(r.content), wall, cpu, rss0 / 1024, rss / 1024,
                         "truncated" in r.text[:20000] if "sarif" in page or "cyclonedx" in page else None))
    return pages, out, bulk_out


def rows_in(page: str, r) -> int | None:
    """How many rows a bulk answer holds (CSV lines, XLSX autofilter rows, SARIF results, CycloneDX components)."""
    import io
    import json
    import zipfile

    if r.status_code != 200:
        return None
    path = page.split("?")[0]
    try:
        if path.endswith(".csv"):
            return r.content.count(b"\n") - 1
        if path.endswith(".xlsx"):
            with zipfile.ZipFile(io.BytesIO(r.content)) as z:
                sheet = z.read(next(n for n in z.namelist() if n.startswith("xl/worksheets/")))
            m = re.search(rb'autoFilter ref="A1:[A-Z]+(\d+)"', sheet)
            return int(m.group(1)) - 1 if m else None
        if path.endswith(".sarif"):
            return len(json.loads(r.content)["runs"][0]["results"])
        if path.endswith(".cyclonedx"):
            return len(json.loads(r.content)["components"])
        if path.endswith("images.json"):
            return len(json.loads(r.content)["images"])
    except (ValueError, KeyError, StopIteration, zipfile.BadZipFile):
        return None
    return None


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
    ap.add_argument("--no-plain", action="store_true", help="skip the comparison with plain `datasette DB` (Datasette's"
                    " default settings: facet suggestions on every table page)")
    ap.add_argument("--no-bulk", action="store_true", help="skip the bulk exports (every image's rows: minutes for"
                    " the spreadsheets at 10,000 images)")
    args = ap.parse_args()
    if args.db:
        path = args.db
        if not os.path.exists(path):
            generate(path, args.images, args.findings)
    else:
        path = str(cached_database(args.images, args.findings, args.cache_dir))
    load = os.getloadavg()[0]
    limit = args.budget
    pages, served, bulk = asyncio.run(measure(path, args.runs, {"suggest_facets": False}, bulk=not args.no_bulk))
    name = Path(path).stem
    plain = {}
    if not args.no_plain:  # the table pages as plain `datasette DB` serves them (one run: seconds each)
        tables = [p for p in pages if p.startswith(f"/{name}/") and "?" not in p and p.count("/") == 2]
        plain = {p: r for p, *r in asyncio.run(measure(path, 1, {}, only=tables))[1]}
    images = __import__("sqlite3").connect(path).execute("SELECT COUNT(*), (SELECT COUNT(*) FROM findings),"
                                                         " (SELECT COUNT(*) FROM packages), (SELECT COUNT(*) FROM"
                                                         " tasks), (SELECT COUNT(*) FROM task_items) FROM images"
                                                         ).fetchone()
    print(f"{images[0]} images, {images[1]} findings, {images[2]} packages, {images[3]} tasks of {images[4]} items;"
          f" budget {limit:.0f} ms; ms, median and worst of {args.runs} runs (the dashboard uncached: as after a scan)")
    print(f"{'page':<78} {'status':>6} {'served':>8} {'worst':>7} {'CPU':>7} {'plain':>8}")
    slow, slow_cpu = [], []
    for page, status, median, worst, timed_out, cpu in served:
        p = plain.get(page)
        plain_timed_out = p[3] if p else []
        if cpu > limit or timed_out:
            slow_cpu.append(page)
        flag = ""
        if median > limit or timed_out or plain_timed_out:
            slow.append(page)
            flag = "  OVER" + (f" (facets timed out or failed: {', '.join(timed_out + plain_timed_out)})"
                               if timed_out or plain_timed_out else "")
        shown = page.replace(f"/{name}/", "/DB/").replace(f"/{name}", "/DB")
        shown = shown if len(shown) <= 78 else shown[:75] + "..."
        print(f"{shown:<78} {status:>6} {median:>8.1f} {worst:>7.1f} {cpu:>7.1f} "
              f"{(f'{p[1]:.0f}' if p else '-'):>8}{flag}")
    print(f"load {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} CPUs")
    print(f"{len(served) - len(slow)}/{len(served)} pages within {limit:.0f} ms as served (wall clock);"
          f" {len(served) - len(slow_cpu)}/{len(served)} within {limit:.0f} ms of CPU (this process's, SQL included:"
          f" what the page costs, whatever the machine's load)")
    print("no facet timed out" if not any(r[4] for r in served) and not any(r[3] for r in plain.values())
          else "some facets timed out or pages failed")
    missed, post = route_coverage(pages + [b[0] for b in bulk])
    print(f"every GET route of the plugin asked for{'' if not missed else ' but: ' + ', '.join(missed)};"
          f" not measured (POST only: they write or start a task): {', '.join(post)}")
    print(f"\nbulk exports (many images' rows: not pages, measured once each, with their throughput and this"
          f" process's peak RSS before and after; load {os.getloadavg()[0]:.1f})")
    print(f"{'export':<70} {'status':>6} {'rows':>9} {'MB':>7} {'s':>6} {'CPU s':>6} {'rows/s':>8} {'RSS MB':>13}")
    for page, status, n, size, wall, cpu, rss0, rss, cut in bulk:
        shown = page.replace(f"/{name}/", "/DB/")
        shown = shown if len(shown) <= 70 else shown[:67] + "..."
        rate = f"{n / wall:,.0f}" if n and wall else "-"
        print(f"{shown:<70} {status:>6} {n if n is not None else '-':>9} {size / 1e6:>7.1f} {wall:>6.1f} {cpu:>6.1f}"
              f" {rate:>8} {rss0:>6.0f}->{rss:<6.0f}{' (capped)' if cut else ''}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())

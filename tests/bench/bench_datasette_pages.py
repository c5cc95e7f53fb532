#!/usr/bin/env python3
"""Benchmark: the plugin's pages on a generated database of 1,000 images, against Datasette's facet
time limit (facet_time_limit_ms, 200 ms by default).

    .venv/bin/python tests/bench/bench_datasette_pages.py [--images 1000] [--db PATH] [--runs 5]

The database is generated once (kept at --db, default /tmp/stowaway-bench-pages-N.db): one small
image built in code is scanned by the real pipeline for its layers, then N images (100 repositories
x N/100 versions) each get a finished scan written through pipeline.write_results with 150 packages
and 60 findings of every kind (40 vulnerabilities drawn from a pool of 400 CVEs). Every page is
then requested through datasette.client: --runs times after one warm-up; the median and the worst
are printed, as `stowaway serve` configures Datasette (suggest_facets off) and, for comparison, as
plain `datasette DB` does (Datasette's defaults: every table page also runs two or three suggestion
queries per column). Exit status 1 when, as served, a page's median exceeds the facet time limit,
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


def generate(path: str, images: int, seed: int = 8) -> None:
    from types import SimpleNamespace

    from imagebuilder import ImageBuilder

    from stowaway.ingest import db as dbm
    from stowaway.ingest.model import Finding, OSInfo, Package
    from stowaway.ingest.pipeline import Scanner, write_results

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
    layer_ids = [r[0] for r in conn.execute("SELECT layer_id FROM image_layers WHERE image_id = 1 ORDER BY position")]
    commands = [r[0] for r in conn.execute("SELECT created_by FROM image_layers WHERE image_id = 1 ORDER BY position")]
    pool = []
    for n in range(400):
        sev = rnd.choices(SEVERITIES, SEVERITY_WEIGHTS)[0]
        score = {"critical": 9.8, "high": 7.5, "medium": 5.3, "low": 3.1}.get(sev)
        pool.append((f"CVE-{2018 + n % 7}-{10000 + n}", sev, score, rnd.random() < 0.6))
    names = [f"lib{n}" for n in range(600)]
    t0 = time.perf_counter()
    for i in range(images):
        repo, version = f"bench/app{i % 100}", f"{i // 100}.0"
        with conn:
            scan_id = conn.execute("INSERT INTO scans (source, reference, status, started_at, finished_at, seconds)"
                                   " VALUES (?, ?, 'done', ?, ?, 1.0)",
                                   [f"oci:{layout}", f"{repo}:{version}", dbm.now(), dbm.now()]).lastrowid
            image_id = dbm.insert_rows(conn, "images", [{
                "reference": f"{repo}:{version}", "repository": repo, "tag": version,
                "manifest_digest": f"sha256:{i:064x}", "platform": "linux/amd64", "source": f"oci:{layout}",
                "size": rnd.randint(5, 900) << 20, "created": f"2024-{1 + i // 100 % 12:02d}-01T00:00:00Z",
                "os_family": "debian", "os_version": "11", "os_name": "Debian GNU/Linux 11 (bullseye)",
                "env": '["PATH=/usr/bin"]', "last_scan_id": scan_id, "first_seen": dbm.now()}])[0]
            conn.execute("UPDATE scans SET image_id = ? WHERE id = ?", [image_id, scan_id])
            conn.executemany("INSERT INTO image_layers (image_id, position, layer_id, created_by) VALUES (?,?,?,?)",
                             [(image_id, p, lid, cmd) for p, (lid, cmd) in enumerate(zip(layer_ids, commands))])
            # what the writer hands write_results: the results and the scan's layer ids
            ctx = SimpleNamespace(os=OSInfo(), packages=[], findings=[], facts={}, layer_ids=layer_ids)
            packages = [Package("deb", name, f"1.{rnd.randint(0, 9)}", "/var/lib/dpkg/status", layer_index=rnd.randint(0, 2),
                                purl=f"pkg:deb/debian/{name}@1") for name in rnd.sample(names, 150)]
            ctx.packages.extend(packages)
            for vid, sev, score, fixed in rnd.sample(pool, 40):
                pkg = rnd.choice(packages)
                ctx.findings.append(Finding("vulnerability", f"{vid} in {pkg.name}", sev, path=pkg.path,
                                            layer_index=pkg.layer_index, rule=vid, package=pkg.key, detail={
                                                "vulnerability_id": vid, "aliases": [f"GHSA-{vid[-5:]}"],
                                                "package_name": pkg.name, "ecosystem": "deb",
                                                "installed_version": pkg.version,
                                                "fixed_version": "9.9" if fixed else "", "cvss_score": score,
                                                "published": "2023-01-01", "description": "generated"}))
            for k in range(5):
                ctx.findings.append(Finding("malware", "test file", "high", path=f"/tmp/m{k}", layer_index=2,
                                            rule="EICAR_Test_File", detail={"rule": "EICAR_Test_File"}))
                ctx.findings.append(Finding("secret", "token", "high", path=f"/opt/app/.env{k}", layer_index=2,
                                            rule="github-pat", detail={"rule_id": "github-pat", "line": k,
                                                                       "masked": "ghp_Y5…uXov"}))
            for k in range(7):
                result = "fail" if k < 4 else "pass"
                ctx.findings.append(Finding("unsafe_setting", f"check {k}", rnd.choice(SEVERITIES[:4]),
                                            path="/etc/ssh/sshd_config", layer_index=1, rule=f"ssh.check{k}",
                                            status=result, detail={"category": "ssh", "check_id": f"ssh.check{k}",
                                                                   "result": result, "target": "/etc/ssh/sshd_config",
                                                                   "description": "d", "suggestion": "s"}))
            ctx.findings.append(Finding("compliance", "nmap", "medium", path="/usr/bin/nmap", layer_index=1,
                                        rule="forbid:nmap", detail={"name": "nmap", "version": "7", "rule": "forbid:nmap"}))
            ctx.findings.append(Finding("base_image", "base", "unknown", detail={"approved": i % 3 != 0}))
            ctx.facts["files"] = {"total_files": 5000, "total_size": 1 << 27, "directories": 300, "symlinks": 40,
                                  "largest": [{"path": f"/opt/f{k}", "size": 1 << (20 - k // 5), "layer_index": 2}
                                              for k in range(50)],
                                  "layers": [{"layer_index": p, "files": 10, "size": 100, "visible_files": 10,
                                              "visible_size": 100, "whiteouts": 0} for p in range(3)]}
            write_results(conn, scan_id, image_id, ctx)
    conn.execute("ANALYZE")
    database.conn.close()
    print(f"generated {images} images in {time.perf_counter() - t0:.1f} s -> {path}", file=sys.stderr)


def pages(name: str, vuln: str) -> list[str]:
    t = f"/{name}"
    return [
        "/-/stowaway/images", "/-/stowaway/images?latest=1", "/-/stowaway/images?sort=size&q=app7",
        "/-/stowaway/image/500", "/-/stowaway/image/bench/app42:3.0", f"/-/stowaway/vulnerability/{vuln}",
        "/-/stowaway/dashboard", "/-/stowaway/settings",
        f"{t}/image_overview", f"{t}/image_overview?latest_version=1",
        f"{t}/vulnerabilities_view", f"{t}/vulnerabilities_view?severity=critical",
        f"{t}/vulnerabilities_view?image_id=500", f"{t}/vulnerabilities_view?_facet_layer=layer_index",
        f"{t}/findings_report", f"{t}/findings?_facet_severity=severity&_facet_kind=kind",
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
        assert r.status_code == 200, (page, r.status_code, r.text[:300])
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            r = await ds.client.get(page)
            times.append((time.perf_counter() - t0) * 1000)
        timed_out = []
        if "/-/stowaway/" not in page and "." not in page.rsplit("/", 1)[-1].split("?")[0]:
            j = await ds.client.get(page.replace("?", ".json?", 1) if "?" in page else page + ".json")
            timed_out = j.json().get("facets_timed_out") or []
        out.append((page, statistics.median(times), max(times), timed_out))
    return limit, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--db")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    path = args.db or f"/tmp/stowaway-bench-pages-{args.images}.db"
    if not os.path.exists(path):
        generate(path, args.images)
    limit, served = asyncio.run(measure(path, args.runs, {"suggest_facets": False}))
    _, plain = asyncio.run(measure(path, args.runs, {}))
    images = __import__("sqlite3").connect(path).execute("SELECT COUNT(*), (SELECT COUNT(*) FROM findings),"
                                                         " (SELECT COUNT(*) FROM packages) FROM images").fetchone()
    print(f"{images[0]} images, {images[1]} findings, {images[2]} packages; facet_time_limit_ms={limit};"
          f" ms, median and worst of {args.runs} runs")
    print(f"{'page':<66} {'served':>8} {'worst':>7} {'plain datasette':>16}")
    slow = []
    for (page, median, worst, timed_out), (_, plain_median, _, plain_timed_out) in zip(served, plain):
        flag = ""
        if median > limit or timed_out or plain_timed_out:
            slow.append(page)
            flag = "  OVER" + (f" (facets timed out: {', '.join(timed_out + plain_timed_out)})"
                               if timed_out or plain_timed_out else "")
        page = page.replace(f"/{Path(path).stem}/", "/DB/")
        print(f"{page:<66} {median:>8.1f} {worst:>7.1f} {plain_median:>16.1f}{flag}")
    print(f"{len(served) - len(slow)}/{len(served)} pages within {limit} ms as served; no facet timed out"
          if not any(t for *_, t in served + plain) else "some facets timed out")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())

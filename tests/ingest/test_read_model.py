"""One read model: every surface shows the same counts per image, kind and severity, and "findings"
means failing findings everywhere (passed and not-applicable checks are check results)."""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import pathlib
import sqlite3
import sys

from conftest import corpus
from store_fixtures import REF, shop_db, shop_template  # noqa: F401 (fixtures)

from stowaway.ingest import cli

KIND_OF_SECTION = {"vulnerabilities": "vulnerability", "malicious_files": "malware", "sensitive_information": "secret",
                   "software_compliance": "compliance", "unsafe_settings": "unsafe_setting"}


def _cli_json(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main([str(a) for a in argv]) == 0
    return json.loads(out.getvalue())


def _cli_lines(*argv):
    """A listing's `--format json`: one object a line."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main([str(a) for a in argv]) == 0
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def _drop_zeros(counts: dict) -> dict:
    return {k: {s: n for s, n in v.items() if n} for k, v in counts.items() if any(v.values())}


def surfaces(db: str) -> dict[str, dict[str, dict]]:
    """{surface: {reference: {"failing": {kind: {severity: n}}, "suppressed": {...}}}} from every surface."""
    from datasette.app import Datasette

    from stowaway.notebooks import data

    out: dict[str, dict] = {}
    out["cli"] = {i["reference"]: i["counts"] for i in _cli_lines("images", "--format", "json", "--db", db)}
    refs = list(out["cli"])
    reports = {ref: _cli_json("report", ref, "--db", db) for ref in refs}
    out["report"] = {ref: r["counts"] for ref, r in reports.items()}
    # the report's own lists, counted: failing entries, apart by suppression (base_image has no severity list)
    listed: dict[str, dict] = {}
    for ref, r in reports.items():
        entry = listed[ref] = {"failing": {}, "suppressed": {}}
        for section, kind in KIND_OF_SECTION.items():
            for item in r[section]:
                if kind == "unsafe_setting" and item["result"] != "fail":
                    continue
                side = entry["suppressed" if item.get("suppressed") else "failing"].setdefault(kind, {})
                side[item["severity"]] = side.get(item["severity"], 0) + 1
    out["report lists"] = listed

    async def page():
        return await Datasette(files=[db]).client.get("/-/stowaway/images.json?size=10000")

    got = asyncio.run(page())
    assert got.status_code == 200, got.text[:300]
    out["images.json"] = {i["reference"]: i["counts"] for i in got.json()["images"]}
    nb: dict[str, dict] = {ref: {"failing": {}, "suppressed": {}} for ref in refs}
    for row in data.counts(db).itertuples():
        for side in ("failing", "suppressed"):
            n = int(getattr(row, side))
            if n:
                nb[row.reference][side].setdefault(row.kind, {})[str(row.severity)] = n
    out["notebooks"] = nb
    return out


def _without(counts: dict, kind: str) -> dict:
    return {side: {k: v for k, v in c.items() if k != kind} for side, c in counts.items()}


def assert_same_everywhere(db: str) -> dict:
    got = surfaces(db)
    cli_counts = got["cli"]
    for surface, counts in got.items():
        if surface == "report lists":
            counts = {r: _without(c, "base_image") for r, c in counts.items()}
            expected = {r: _without(c, "base_image") for r, c in cli_counts.items()}
        else:
            expected = cli_counts
        assert {r: {s: _drop_zeros(v) for s, v in c.items()} for r, c in counts.items()} == \
            {r: {s: _drop_zeros(v) for s, v in c.items()} for r, c in expected.items()}, surface
    # the image list's own columns and the notebooks' per-kind frame agree with the counts
    from stowaway.notebooks import data

    items = {i["reference"]: i for i in _cli_lines("images", "--format", "json", "--db", db)}
    frame = data.images(db).set_index("reference")
    for ref, item in items.items():
        failing = item["counts"]["failing"]

        def total(kind, sev=None):
            return sum(n for s, n in failing.get(kind, {}).items() if sev is None or s == sev)

        assert item["vulnerabilities"] == total("vulnerability") == frame.loc[ref, "vulnerabilities"]
        assert (item["critical"], item["high"]) == (total("vulnerability", "critical"), total("vulnerability", "high"))
        assert item["secrets"] == total("secret") == frame.loc[ref, "secrets"]
        assert item["unsafe_settings"] == total("unsafe_setting") == frame.loc[ref, "unsafe_settings"]
        assert item["malicious_files"] == total("malware") == frame.loc[ref, "malicious"]
        for sev in ("critical", "high", "medium", "low", "negligible"):
            assert item[f"failing_{sev}"] == sum(v.get(sev, 0) for v in failing.values()), (ref, sev)
    return got


def test_counts_are_identical_on_every_surface(shop_db, tmp_path):
    db = shop_db
    # a second image, and a suppression, so that both sides of the counts are exercised
    from store_fixtures import shop

    shop("2.15.0").write_oci_layout(tmp_path / "v2", ref="corpus/shop:2.0")
    assert cli.main(["scan", f"oci:{tmp_path / 'v2'}", "--db", db, "--no-progress"]) == 0
    assert cli.main(["ignore", "add", "--image", "corpus/shop:1.0", "--id", "CVE-2021-44228", "--reason", "r",
                     "--db", db]) == 0
    got = assert_same_everywhere(db)
    assert got["cli"][REF]["suppressed"] == {"vulnerability": {"critical": 1}}
    assert got["cli"]["corpus/shop:2.0"]["failing"]["vulnerability"] == {"high": 1}
    # a page of the image list counts its own images only, and the same as the whole list does
    from stowaway.ingest.images import image_list

    conn = sqlite3.connect(db)
    whole = image_list(conn)
    assert len(whole) == 2 and all(item["failing"] for item in whole)
    assert image_list(conn, limit=1) + image_list(conn, limit=1, offset=1) == whole


def test_findings_are_failing_findings_and_checks_are_check_results(shop_db):
    db = shop_db
    conn = sqlite3.connect(db)
    statuses = dict(conn.execute("SELECT status, COUNT(*) FROM findings GROUP BY status").fetchall())
    assert statuses.get("pass") and statuses.get("not_applicable")  # the image has every kind of check result
    # "All findings": no passed or not-applicable check among them, nor in any count
    assert {r[0] for r in conn.execute("SELECT DISTINCT status FROM findings_report")} == {"fail"}
    assert conn.execute("SELECT COUNT(*) FROM failing_findings").fetchone()[0] == \
        conn.execute("SELECT COUNT(*) FROM findings_report").fetchone()[0] == statuses["fail"]
    results = dict(conn.execute("SELECT result, COUNT(*) FROM check_results GROUP BY result").fetchall())
    assert results["pass"] == statuses["pass"] and results["not_applicable"] == statuses["not_applicable"]
    from datasette.app import Datasette

    name = pathlib.Path(db).stem

    async def get(path):
        return await Datasette(files=[db]).client.get(path)

    # SARIF of the check-results table: only the failing checks are results, every one of them, even
    # past the page size
    sarif = json.loads(asyncio.run(get(f"/{name}/unsafe_settings_view.sarif?_size=2")).text)
    got = [r["properties"]["finding_id"] for r in sarif["runs"][0]["results"]]
    fails = [r[0] for r in conn.execute("SELECT id FROM unsafe_settings_view WHERE result = 'fail'")]
    assert sorted(got) == sorted(fails) and len(fails) > 2
    page = asyncio.run(get(f"/{name}/findings_report.json?_shape=array&_size=max")).json()
    assert {r["status"] for r in page} == {"fail"}


@corpus
def test_counts_are_identical_on_every_surface_for_the_corpus(tmp_path_factory, tmp_path):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "datasette_plugin"))
    from plugin_fixtures import corpus_db_path

    src = sqlite3.connect(corpus_db_path(tmp_path_factory))
    db = str(tmp_path / "corpus.db")
    dst = sqlite3.connect(db)
    src.backup(dst)
    dst.close()
    assert cli.main(["ignore", "add", "--image", "corpus/shop", "--id", "CVE-2021-44228", "--reason",
                     "accepted for the test", "--db", db]) == 0
    got = assert_same_everywhere(db)
    assert got["cli"]["corpus/shop:1.0"]["suppressed"].get("vulnerability")
    assert len(got["cli"]) >= 2

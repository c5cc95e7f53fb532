"""The query planner's statistics (sqlite_stat1) are kept by the writes (readmodel.keep_statistics), so a
database served read-only or immutable, which its reader cannot analyze, plans its pages with them."""
from __future__ import annotations

import sqlite3

from store_fixtures import REF, shop, shop_db, shop_template  # noqa: F401 (fixtures)

from stowaway.ingest import cli, readmodel


def _run(*argv) -> None:
    assert cli.main([str(a) for a in argv]) == 0


def _stats(db: str) -> dict[tuple[str, str], str]:
    conn = sqlite3.connect(db)
    try:
        return {(t, i): s for t, i, s in conn.execute("SELECT tbl, idx, stat FROM sqlite_stat1")}
    finally:
        conn.close()


def test_a_scan_leaves_statistics_of_every_report_table_at_its_row_count(shop_db):
    stats = _stats(shop_db)
    conn = sqlite3.connect(shop_db)
    try:
        for table in ("vulnerabilities_view", "findings_report", "packages_view", "findings", "packages", "images"):
            rows = conn.execute(f"SELECT COUNT(*) FROM [{table}]").fetchone()[0]
            indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND"
                                                  " tbl_name = ?", [table])}
            got = {i: s for (t, i), s in stats.items() if t == table}
            assert indexes <= set(got), (table, indexes - set(got))  # every index, a new one too
            assert {s.split()[0] for s in got.values()} == {str(rows)}, (table, got)  # the counted size
        assert readmodel.stale_statistics(conn) == []
        assert readmodel.keep_statistics(conn, check_all=True) == []  # nothing to do until a table moves
    finally:
        conn.close()


def test_statistics_lost_or_outgrown_are_taken_again_by_the_next_write(shop_db, tmp_path):
    """Statistics lost (a database from before they were kept) are taken by the next scan, with the counted
    sizes; then only the tables that moved past the factor are analyzed again, and a write that moves none
    analyzes nothing."""
    conn = sqlite3.connect(shop_db)
    with conn:
        conn.execute("DELETE FROM sqlite_stat1")
    conn.close()
    shop("2.15.0").write_oci_layout(tmp_path / "v2", ref="corpus/shop:2.0")
    _run("scan", f"oci:{tmp_path / 'v2'}", "--db", shop_db, "--no-progress")
    stats = _stats(shop_db)
    assert {"vulnerabilities_view", "findings_report", "findings", "images"} <= {t for t, _i in stats}
    assert {s.split()[0] for (t, _i), s in stats.items() if t == "images"} == {"2"}
    conn = sqlite3.connect(shop_db)
    with conn:  # taken at a tenth of today's rows: the images table moved past the factor
        conn.execute("UPDATE sqlite_stat1 SET stat = '1000 1' WHERE tbl IN ('images', 'findings_report')")
    assert set(readmodel.stale_statistics(conn)) == {"images", "findings_report"}
    with conn:
        assert set(readmodel.keep_statistics(conn)) == {"images", "findings_report"}
    assert readmodel.stale_statistics(conn) == []
    with conn:  # a suppression writes the report rows without moving any table: nothing analyzed
        conn.execute("UPDATE sqlite_stat1 SET stat = 'x' WHERE tbl = 'secrets_view'")  # marker a re-analyze replaces
    conn.close()
    _run("ignore", "add", "--image", REF, "--id", "CVE-2021-44228", "--reason", "accepted", "--db", shop_db)
    assert _stats(shop_db).get(("secrets_view", next(i for t, i in _stats(shop_db) if t == "secrets_view"))) == "x"

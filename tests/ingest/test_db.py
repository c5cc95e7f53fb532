"""Schema migrations and the views that say which scan is current."""
import sqlite3

from imagebuilder import ImageBuilder

from stowaway.ingest import db as dbm


def test_migrations_bring_an_old_database_up_and_are_idempotent(tmp_path):
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    conn.executescript("BEGIN;" + dbm.SCHEMA_V1 + ";PRAGMA user_version=1;COMMIT;")
    conn.close()
    database = dbm.connect(path)
    assert database.execute("PRAGMA user_version").fetchone()[0] == len(dbm.MIGRATIONS)
    assert "images i" in database.execute("SELECT sql FROM sqlite_master WHERE name='latest_scans'").fetchone()[0]
    database.conn.close()
    again = dbm.connect(path)  # nothing left to apply
    assert again.execute("PRAGMA user_version").fetchone()[0] == len(dbm.MIGRATIONS)
    assert again.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_views_show_the_newest_finished_scan_only(tmp_path, scan):
    token = "GITHUB_TOKEN=ghp_" + "Ab1Cd2Ef3G" * 3 + "h4I5j6\n"
    one = ImageBuilder().layer({"app/.env": token})
    path = one.write_docker_archive(tmp_path / "a.tar", ref="views:1")
    database, first = scan(f"docker-archive:{path}")
    database, second = scan(f"docker-archive:{path}")
    broken = one.write_docker_archive(tmp_path / "a.tar", ref="views:1", diff_ids=["sha256:" + "9" * 64])
    database, third = scan(f"docker-archive:{broken}")
    assert third[0].status == "failed"
    latest = database.execute("SELECT id FROM latest_scans").fetchall()
    assert latest == [(second[0].scan_id,)]
    rows = database.execute("SELECT DISTINCT scan_id FROM findings_view WHERE kind = 'secret'").fetchall()
    assert rows == [(second[0].scan_id,)]
    assert database.execute("SELECT COUNT(*) FROM findings WHERE kind = 'secret'").fetchone()[0] == 2

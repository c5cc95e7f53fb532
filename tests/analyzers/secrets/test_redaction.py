"""Password hashes in RUN lines are masked before the image row is stored; the baseline still sees them."""
from conftest import report_of
from imagebuilder import ImageBuilder

HASH = "$6$Qx7rT2mV$7BwkzN0EvQCoy0l0WuN/wJSGxWwTsDMgxHGsvC75TXY5pKEMgLZGQILfpjLKA/n1V8pk1HhJ/mMLKsjVaj/fl."
YESCRYPT = "$y$j9T$8bq0jRzmeY/N8EaKkD2rU.$ecn/ICul/EDIYHyyb9tOxw6jRjr234Ixl/wh4yuCq1A"


def test_crypt_hashes_in_history_never_reach_the_database(tmp_path, scan):
    img = ImageBuilder().layer({"etc/passwd": "root:x:0:0::/root:/bin/sh\n"},
                               created_by=f"/bin/sh -c echo 'admin:{HASH}' | chpasswd -e && echo 'test:{YESCRYPT}' | chpasswd -e")
    path = img.write_docker_archive(tmp_path / "h.tar", ref="hashes:1")
    database, outcomes = scan(f"docker-archive:{path}")
    assert outcomes[0].status == "done"
    rep = report_of(database, "hashes:1")
    created_by = rep["image"]["layers"][0]["created_by"]
    assert "chpasswd" in created_by and "$6$…[hash masked]" in created_by and "$y$…[hash masked]" in created_by
    database.conn.execute("PRAGMA wal_checkpoint(FULL)")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("scan.db*"))
    assert HASH.encode() not in raw and YESCRYPT.encode() not in raw
    assert HASH[:20].encode() not in raw

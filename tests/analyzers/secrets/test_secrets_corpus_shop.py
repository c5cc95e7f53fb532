"""Issue 5's acceptance for malicious files and secrets on corpus/shop:1.0, checked by the corpus checker,
plus a grep of the whole database (WAL and decompressed per-layer records included) for the raw values."""
import json
import subprocess
import sys

import pytest
import zstandard
from conftest import CORPUS, corpus, report_of

pytestmark = corpus

EXPECTED = CORPUS / "expected.json"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    import os

    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    tmp = tmp_path_factory.mktemp("shop")
    old = {k: os.environ.get(k) for k in ("STOWAWAY_CACHE_DIR", "STOWAWAY_DATA_DIR")}
    os.environ["STOWAWAY_CACHE_DIR"] = str(tmp / "cache")
    os.environ["STOWAWAY_DATA_DIR"] = str(tmp / "data")
    try:
        database = connect(str(tmp / "shop.db"))
        out = Scanner(database, {}, risks=["malicious", "secrets"], progress=False).run(
            [f"docker-archive:{CORPUS / 'shop-1.0.docker.tar.gz'}"])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert [o.status for o in out] == ["done"], out
    report = report_of(database, "corpus/shop:1.0")
    path = tmp / "report.json"
    path.write_text(json.dumps(report))
    return tmp, database, report, path


def test_checker_passes_malicious_secrets_masking(shop):
    tmp, database, report, path = shop
    r = subprocess.run([sys.executable, str(CORPUS / "check_report.py"), str(path), "--only", "malicious,secrets,masking"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "areas: 3/3 complete" in r.stdout


def test_no_false_positives_on_the_debian_base(shop):
    _, _, report, _ = shop
    expected = json.loads(EXPECTED.read_text())["images"]["corpus/shop:1.0"]
    assert {m["path"] for m in report["malicious_files"]} == {m["path"] for m in expected["malicious_files"]}
    wanted = {s["path"] for s in expected["secrets_reported"]} | {""}
    assert {s["path"] for s in report["sensitive_information"]} == wanted
    assert {(s["path"], s["layer_index"]) for s in report["sensitive_information"] if s["path"] in
            expected["layer_of"]} == {(p, i) for p, i in expected["layer_of"].items() if p in wanted}


def test_raw_values_nowhere_in_the_database(shop):
    tmp, database, report, _ = shop
    raws = json.loads(EXPECTED.read_text())["images"]["corpus/shop:1.0"]["secret_values"]
    database.conn.commit()
    blob = b"".join(p.read_bytes() for p in tmp.glob("shop.db*"))
    d = zstandard.ZstdDecompressor()
    for (records,) in database.execute("SELECT records FROM layer_analyses"):
        blob += d.decompress(records) if records else b""
    for (text,) in database.execute("SELECT env || history FROM images"):
        blob += text.encode()
    leaked = [r[:6] for r in raws if r.encode() in blob]
    assert leaked == []
    assert b"BEGIN RSA PRIVATE KEY" not in blob and b"BEGIN OPENSSH PRIVATE KEY" not in blob

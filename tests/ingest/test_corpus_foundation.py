"""Issue 2's acceptance on the public corpus: both sources give the same image, checked by its checker."""
import json
import subprocess
import sys

import pytest
from conftest import CORPUS, corpus, report_of

pytestmark = corpus


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    tmp = tmp_path_factory.mktemp("corpus")
    archive_db = connect(str(tmp / "archive.db"))
    oci_db = connect(str(tmp / "oci.db"))
    # file information only: the foundation's own analyzers
    a = Scanner(archive_db, {}, risks=["files"], progress=False).run([f"docker-archive:{CORPUS / 'shop-1.0.docker.tar.gz'}"])
    o = Scanner(oci_db, {}, risks=["files"], progress=False).run([f"oci:{CORPUS / 'oci'}"])
    return tmp, archive_db, a, oci_db, o


def check(tmp, database, ref, areas):
    out = tmp / f"{ref.replace('/', '_')}.json"
    out.write_text(json.dumps(report_of(database, ref)))
    r = subprocess.run([sys.executable, str(CORPUS / "check_report.py"), str(out), "--only", areas],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_shop_from_archive_and_oci_pass_the_checker(scanned):
    tmp, archive_db, a, oci_db, o = scanned
    assert [x.status for x in a] == ["done"] and [x.status for x in o] == ["done"] * 3
    for database in (archive_db, oci_db):
        check(tmp, database, "corpus/shop:1.0", "os,files")
        rep = report_of(database, "corpus/shop:1.0")
        assert len(rep["image"]["layers"]) == 10


def test_both_sources_give_identical_file_statistics(scanned):
    _, archive_db, _, oci_db, _ = scanned
    a, o = report_of(archive_db, "corpus/shop:1.0"), report_of(oci_db, "corpus/shop:1.0")
    assert a["files"] == o["files"]
    assert [l["diff_id"] for l in a["image"]["layers"]] == [l["diff_id"] for l in o["image"]["layers"]]


def test_other_corpus_images(scanned):
    tmp, _, _, oci_db, _ = scanned
    check(tmp, oci_db, "corpus/tools:1.0", "files")
    check(tmp, oci_db, "corpus/debian:bullseye-base", "os,files")


def test_shop_reuses_the_bullseye_base_layer(scanned):
    _, _, _, oci_db, outcomes = scanned
    by_ref = {x.reference: x for x in outcomes}
    # index.json lists the base first: its one layer is read then; shop finds it in the database
    assert by_ref["corpus/debian:bullseye-base"].layers_read == 1
    assert (by_ref["corpus/shop:1.0"].layers_read, by_ref["corpus/shop:1.0"].layers_cached) == (9, 1)
    base_layer = oci_db.execute("SELECT layer_id FROM image_layers il JOIN images i ON i.id = il.image_id"
                                " WHERE i.reference = 'corpus/debian:bullseye-base'").fetchone()[0]
    users = oci_db.execute("SELECT COUNT(*) FROM image_layers WHERE layer_id = ?", [base_layer]).fetchone()[0]
    assert users == 2

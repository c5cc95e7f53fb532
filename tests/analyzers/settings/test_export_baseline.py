import csv
import io

from imagebuilder import File, ImageBuilder

from stowaway.ingest.cli import main
from stowaway.ingest.exports import REPORTS
from stowaway.ingest.exports import rows as export_rows

COLUMNS = REPORTS["baseline"]["columns"]


def rows(database):
    return export_rows(database, "baseline")[1]

ANALYZERS = ["os-release", "settings-files", "weak-passwords"]


def two_images(scan, tmp_path):
    root = ImageBuilder()
    root.layer({"etc/os-release": "ID=centos\nVERSION_ID=7\n", "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n",
                "etc/shadow": File("root::19000:0:99999:7:::\n", mode=0o000),
                "etc/login.defs": "PASS_MAX_DAYS 99999\n"})
    root.write_oci_layout(tmp_path / "oci", ref="centos-like:1")
    hardened = ImageBuilder(user="app", healthcheck={"Test": ["CMD", "true"]})
    hardened.layer({"etc/os-release": "ID=debian\nVERSION_ID=12\n", "etc/login.defs": "PASS_MAX_DAYS 60\n"})
    hardened.write_oci_layout(tmp_path / "oci", ref="debian-like:1", append=True)
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", analyzer_names=ANALYZERS)
    assert [o.status for o in outcomes] == ["done", "done"], [o.error for o in outcomes]
    return database


def test_csv_has_one_row_per_check_result_per_image(scan, tmp_path, capsys):
    database = two_images(scan, tmp_path)
    db_path = str(tmp_path / "scan.db")
    assert main(["export", "baseline", "--db", db_path]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(table[0]) == COLUMNS
    assert {r["image"] for r in table} == {"centos-like:1", "debian-like:1"}
    per_image = {}
    for r in table:
        per_image.setdefault(r["image"], []).append((r["check_id"], r["target"]))
    for image, keys in per_image.items():
        assert len(keys) == len(set(keys)), image  # no check result twice
    got = {(r["image"], r["check_id"]): r for r in table}
    assert got[("centos-like:1", "password_policy.pass-max-days")]["result"] == "fail"
    assert got[("debian-like:1", "password_policy.pass-max-days")]["result"] == "pass"
    assert got[("centos-like:1", "baseline.empty-passwords")]["result"] == "fail"
    assert got[("centos-like:1", "baseline.root-gid")]["benchmark"].startswith("CIS CentOS Linux 7")
    assert got[("debian-like:1", "container.non-root-user")]["result"] == "pass"
    assert got[("centos-like:1", "weak_password.account")]["target"] == "root"
    assert len(table) == len(rows(database))


def test_image_filter_and_xlsx(scan, tmp_path):
    from openpyxl import load_workbook

    two_images(scan, tmp_path)
    out = tmp_path / "baseline.xlsx"
    assert main(["export", "baseline", "--db", str(tmp_path / "scan.db"), "--format", "xlsx", "--image",
                 "debian-like:1", "-o", str(out)]) == 0
    wb = load_workbook(out)
    sheet = wb["Baseline"]
    header = [c.value for c in sheet[1]]
    assert header == COLUMNS
    data = [dict(zip(header, [c.value for c in row])) for row in sheet.iter_rows(min_row=2)]
    assert data and {r["image"] for r in data} == {"debian-like:1"}
    fail_row = next(i for i, r in enumerate(data, 2) if r["result"] == "fail")
    assert sheet.cell(row=fail_row, column=COLUMNS.index("result") + 1).fill.fgColor.rgb.endswith("F8CBAD")
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == f"A1:O{len(data) + 1}"


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["export", "baseline", "--db", str(tmp_path / "none.db")]) == 2
    assert "no such database" in capsys.readouterr().err
    from stowaway.ingest.db import connect

    connect(str(tmp_path / "empty.db"))
    assert main(["export", "baseline", "--db", str(tmp_path / "empty.db"), "--image", "missing:1"]) == 2
    assert "no such image" in capsys.readouterr().err

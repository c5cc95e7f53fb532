"""The notebook helpers, tested without a browser or a kernel: widgets by .value and .click()."""
import pytest
from conftest import CORPUS
from imagebuilder import ImageBuilder

from stowaway.ingest import demo
from stowaway.notebooks import ScanPanel, data, figures


@pytest.fixture
def sample(tmp_path):
    """The demo's shop image, written as a docker-save archive (built in code)."""
    base = demo.base_image()
    path = demo.shop_image(base).write_docker_archive(tmp_path / "shop.tar.gz", ref="demo/shop:1.0",
                                                      compress_with="gzip")
    return str(path)


def test_scan_panel_click_scans_and_shows_new_findings(tmp_path, sample):
    corpus_shop = CORPUS / "shop-1.0.docker.tar.gz"
    location, ref = (str(corpus_shop), "corpus/shop:1.0") if corpus_shop.exists() else (sample, "demo/shop:1.0")
    db = str(tmp_path / "nb.db")
    panel = ScanPanel(db)
    panel.kind.value = "docker-archive"
    panel.location.value = location
    panel.risks.value = ("secrets", "malicious", "files")
    panel.concurrency.value = 2
    panel.scan_button.click()
    assert [o.status for o in panel.last_outcomes] == ["done"], panel.status.value
    assert panel.progress.value == panel.progress.max
    assert "done" in panel.tasks.value and "1 image(s) scanned" in panel.status.value
    kinds = set(panel.last_findings["kind"])
    assert kinds == {"secret", "malware"}  # only the chosen risk types ran
    assert (panel.last_findings["image"] == ref).all()
    secrets = data.secrets(db)
    assert "/tmp/eicar.com" in set(data.findings(db, kind="malware")["path"])
    assert len(secrets) and secrets["masked"].str.len().gt(0).all()
    if ref == "corpus/shop:1.0":
        import json

        raws = json.loads((CORPUS / "expected.json").read_text())["images"][ref]["secret_values"]
        dump = secrets.to_csv()
        assert not [r for r in raws if r in dump]


def test_scan_panel_refuses_an_empty_location(tmp_path):
    panel = ScanPanel(str(tmp_path / "e.db"))
    panel.scan_button.click()
    assert "Enter a location" in panel.status.value and panel.last_outcomes == []


def test_scan_panel_reports_a_failed_source(tmp_path):
    panel = ScanPanel(str(tmp_path / "f.db"))
    panel.location.value = str(tmp_path / "missing.tar")
    panel.scan_button.click()
    assert [o.status for o in panel.last_outcomes] == ["failed"]
    assert "failed:" in panel.status.value and "no such file" in panel.status.value


def test_data_helpers_and_scan_comparison(tmp_path, scan):
    v1 = ImageBuilder().layer({"opt/app/.env": "TOKEN=ghp_" + "a1B2c3D4" * 4 + "e5F6\n", "etc/passwd": "root:x:0:0::/:/bin/sh\n"})
    v2 = ImageBuilder().layer({"opt/app/.env": "NOTHING=here\n", "tmp/eicar.com":
                               "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"})
    p1 = v1.write_docker_archive(tmp_path / "v1.tar", ref="trend/app:1")
    database, _ = scan(f"docker-archive:{p1}")
    p2 = v2.write_docker_archive(tmp_path / "v2.tar", ref="trend/app:1")
    database, _ = scan(f"docker-archive:{p2}")
    images = data.images(database)
    assert list(images["reference"]) == ["trend/app:1"] or len(images) == 2
    diff = data.compare_scans(database, "trend/app:1")
    changes = dict(zip(diff["kind"] + ":" + diff["change"], diff["change"]))
    assert changes.get("secret:fixed") == "fixed" and changes.get("malware:new") == "new"
    t = data.trend(database, "trend/app:1")
    assert sorted(t["scan_id"].unique()) == sorted(diff.attrs.values())
    by_layer = data.findings_by_layer(database, "trend/app:1")
    assert by_layer["malicious"].sum() == 1
    for fig in (figures.trend(t), figures.comparison(diff), figures.findings_by_layer(by_layer, "trend/app:1"),
                figures.severity_by_image(data.findings(database)), figures.fixable(data.vulnerabilities(database)),
                figures.secrets_by_type(data.secrets(database))):
        assert fig.to_dict()["layout"]["title"]["text"]


def test_figures_render_to_png(tmp_path, sample, scan):
    database, _ = scan(f"docker-archive:{sample}")
    fig = figures.severity_by_image(data.findings(database))
    assert len(fig.data) >= 1
    out = tmp_path / "severity.png"
    try:
        fig.write_image(str(out), width=800, height=500)
    except Exception as exc:  # kaleido needs a Chromium; without one, fall back to HTML a person can open
        pytest.skip(f"no PNG renderer here ({exc.__class__.__name__}); HTML written instead")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000

"""`db update` against a local HTTP server (127.0.0.1) that speaks Range, If-Range, ETags and x-goog-hash
as Google Cloud Storage does for osv.dev's exports."""
import base64
import hashlib
import io
import json
import random
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from osv_fixtures import osv

from stowaway.analyzers.vulnerabilities import download
from stowaway.ingest import cli


def make_zip(records):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for r in records:
            zf.writestr(f"{r['id']}.json", json.dumps(r))
    return buf.getvalue()


class Feed:
    """What the server serves: {path: bytes}, plus knobs to misbehave."""

    def __init__(self):
        self.files = {}
        self.requests = []
        self.cut_after = None  # bytes: drop the connection after sending this many
        self.bad_md5 = False


def serve(feed):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            feed.requests.append((self.path, dict(self.headers)))
            body = feed.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            etag = '"' + hashlib.md5(body).hexdigest() + '"'
            md5 = hashlib.md5(b"x" if feed.bad_md5 else body).digest()
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.end_headers()
                return
            start = 0
            rng = self.headers.get("Range")
            if rng and self.headers.get("If-Range", etag) == etag:
                start = int(rng.split("=")[1].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            part = body[start:]
            self.send_header("Content-Length", str(len(part)))
            self.send_header("ETag", etag)
            self.send_header("x-goog-hash", f"crc32c=AAAAAA==,md5={base64.b64encode(md5).decode()}")
            self.end_headers()
            if feed.cut_after is not None:
                self.wfile.write(part[:feed.cut_after])
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            self.wfile.write(part)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def feed():
    f = Feed()
    server = serve(f)
    f.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield f
    server.shutdown()
    server.server_close()


# random details: the zip must stay large (several read chunks) for the interruption test
RECORDS = [osv(f"PYSEC-{i}", "PyPI", f"pkg{i}", [{"introduced": "0"}, {"fixed": "1.0"}],
               details=base64.b64encode(random.Random(i).randbytes(1500)).decode()) for i in range(300)]


def test_update_downloads_verifies_and_imports(feed, tmp_path, capsys):
    feed.files["/PyPI/all.zip"] = make_zip(RECORDS)
    db = str(tmp_path / "v.db")
    assert cli.main(["db", "update", "--ecosystem", "PyPI", "--url", feed.base, "--db", db, "--no-progress"]) == 0
    assert "300 new" in capsys.readouterr().err
    cached = tmp_path / "osv-feeds" / "PyPI" / "all.zip"
    assert cached.read_bytes() == feed.files["/PyPI/all.zip"]
    meta = json.loads((tmp_path / "osv-feeds" / "PyPI" / "all.zip.meta.json").read_text())
    assert meta["verified"] == ["md5", "zip"]
    # unchanged on the server: a conditional request, nothing downloaded or imported again
    assert cli.main(["db", "update", "--ecosystem", "PyPI", "--url", feed.base, "--db", db, "--no-progress"]) == 0
    assert "PyPI: unchanged" in capsys.readouterr().err
    assert feed.requests[-1][1].get("If-None-Match") == meta["etag"]


def test_interrupted_download_resumes_with_a_range_request(feed, tmp_path):
    body = make_zip(RECORDS)
    feed.files["/npm/all.zip"] = body
    dest = str(tmp_path / "npm" / "all.zip")
    feed.cut_after = len(body) // 3
    with pytest.raises(download.DownloadError, match="run again to resume"):
        download.fetch(f"{feed.base}/npm/all.zip", dest, progress=False)
    have = (tmp_path / "npm" / "all.zip.part").stat().st_size
    assert 0 < have < len(body)
    feed.cut_after = None
    path, changed = download.fetch(f"{feed.base}/npm/all.zip", dest, progress=False)
    assert changed and open(path, "rb").read() == body
    headers = feed.requests[-1][1]
    assert headers["Range"] == f"bytes={have}-" and headers["If-Range"].startswith('"')
    assert not (tmp_path / "npm" / "all.zip.part").exists()


def test_a_corrupt_download_is_discarded(feed, tmp_path):
    feed.files["/Go/all.zip"] = make_zip(RECORDS[:5])
    feed.bad_md5 = True
    dest = tmp_path / "Go" / "all.zip"
    with pytest.raises(download.DownloadError, match="md5 mismatch"):
        download.fetch(f"{feed.base}/Go/all.zip", str(dest), progress=False)
    assert not dest.exists() and not (tmp_path / "Go" / "all.zip.part").exists()
    feed.bad_md5 = False
    feed.files["/Go/all.zip"] = b"<html>not a zip</html>"
    with pytest.raises(download.DownloadError, match="not a zip"):
        download.fetch(f"{feed.base}/Go/all.zip", str(dest), progress=False)
    assert not dest.exists()


def test_http_errors_are_one_line_and_the_exit_status_says_so(feed, tmp_path, capsys):
    db = str(tmp_path / "v.db")
    assert cli.main(["db", "update", "--ecosystem", "Nope", "--url", feed.base, "--db", db, "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"stowaway: {feed.base}/Nope/all.zip: HTTP 404 Not Found"]


def test_ecosystem_names_are_url_quoted():
    assert download.ecosystem_url("https://x/", "Red Hat") == "https://x/Red%20Hat/all.zip"


def test_verify_is_passed_on_every_request(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert download.ca_verify(None) == "/etc/ssl/certs/ca-certificates.crt"
    assert download.ca_verify("/my/ca.pem") == "/my/ca.pem"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert download.ca_verify(None) is True

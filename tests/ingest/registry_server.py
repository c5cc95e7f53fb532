"""Real components for registry tests: Debian's docker-registry on 127.0.0.1 (plain, htpasswd, TLS with
a CA made here), images pushed with skopeo, and a tiny misbehaving HTTP server for what a real
registry will not do (loops, huge manifests, wrong digests, 5xx)."""
from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
HTPASSWD = shutil.which("htpasswd")
OPENSSL = shutil.which("openssl")

needs_registry = pytest.mark.skipif(
    not (REGISTRY and SKOPEO), reason="needs Debian's docker-registry and skopeo (apt-get install docker-registry skopeo)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_ca_and_cert(directory, host="127.0.0.1"):
    """A CA and a server certificate it signs, for `host` (IP SAN). Returns (ca.crt, server.crt, server.key)."""
    d = str(directory)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=d)  # noqa: E731
    run(OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=stowaway test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    run(OPENSSL, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}", "-keyout", "server.key",
        "-out", "server.csr")
    with open(os.path.join(d, "ext.cnf"), "w") as fh:
        fh.write(f"subjectAltName=IP:{host}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                 "extendedKeyUsage=serverAuth\n")
    run(OPENSSL, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt")
    return os.path.join(d, "ca.crt"), os.path.join(d, "server.crt"), os.path.join(d, "server.key")


class Registry:
    """docker-registry serving from a temporary directory; `blob_gets()` counts layer downloads in its log."""

    def __init__(self, root, auth: tuple[str, str] | None = None, tls: bool = False):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.auth = auth
        self.tls = tls
        self.ca = ""
        lines = ["version: 0.1", "log:", "  level: info", "  accesslog:", "    disabled: false", "storage:",
                 "  filesystem:", f"    rootdirectory: {self.root}/data", "  delete:", "    enabled: true",
                 "http:", f"  addr: 127.0.0.1:{self.port}"]
        if tls:
            self.ca, cert, key = make_ca_and_cert(self.root)
            lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
        if auth:
            if not HTPASSWD:
                pytest.skip("needs htpasswd (apt-get install apache2-utils)")
            out = subprocess.run([HTPASSWD, "-Bbn", auth[0], auth[1]], check=True, capture_output=True, text=True)
            with open(os.path.join(self.root, "htpasswd"), "w") as fh:
                fh.write(out.stdout)
            lines += ["auth:", "  htpasswd:", "    realm: stowaway-test", f"    path: {self.root}/htpasswd"]
        self.config = os.path.join(self.root, "config.yml")
        with open(self.config, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        self.log_path = os.path.join(self.root, "registry.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([REGISTRY, "serve", self.config], stdout=self.log, stderr=subprocess.STDOUT)
        self._wait()

    def _wait(self):
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("docker-registry exited: " + open(self.log_path, errors="replace").read()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("docker-registry did not start")

    def options(self) -> dict:
        opts: dict = {"scheme": "https" if self.tls else "http"}
        if self.tls:
            opts["ca"] = self.ca
        if self.auth:
            opts["username"], opts["password"] = self.auth
        return opts

    def push(self, source: str, dest: str, all_platforms: bool = False, manifest_format: str = "") -> None:
        """skopeo copy SOURCE (oci:DIR:REF) docker://HOST/DEST; manifest_format 'v2s2' for Docker's media types."""
        args = [SKOPEO, "copy", "--quiet", "--dest-tls-verify=false", "--insecure-policy"]
        if all_platforms:
            args.append("--all")
        if manifest_format:
            args += ["--format", manifest_format]
        if self.auth:
            args += ["--dest-creds", f"{self.auth[0]}:{self.auth[1]}"]
        subprocess.run(args + [source, f"docker://{self.host}/{dest}"], check=True, capture_output=True, timeout=300)

    def blob_gets(self) -> list[str]:
        """Layer and config downloads (GET .../blobs/...) answered so far, from the access log."""
        self.log.flush()
        text = open(self.log_path, errors="replace").read()
        return re.findall(r'"GET (/v2/[^ ]+/blobs/sha256:[0-9a-f]+) HTTP/[0-9.]+" 200', text)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def registry(tmp_path):
    if not (REGISTRY and SKOPEO):
        pytest.skip("needs Debian's docker-registry and skopeo (apt-get install docker-registry skopeo)")
    reg = Registry(tmp_path / "registry")
    yield reg
    reg.stop()


class Misbehaving(http.server.ThreadingHTTPServer):
    """A local HTTP server whose answers the test decides: `routes[path] = handler(request) -> (status, headers, body)`."""

    daemon_threads = True

    def __init__(self):
        self.routes: dict = {}
        self.hits: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        self.host = f"127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self):
        self.server.hits.append(f"{self.command} {self.path}")
        path = self.path.split("?")[0]
        handler = self.server.routes.get(path)
        if handler is None:
            status, headers, body = 404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"NOT_FOUND"}]}'
        else:
            status, headers, body = handler(self)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    do_GET = do_HEAD = _answer


@pytest.fixture
def server():
    """A Misbehaving server on 127.0.0.1 for the test (import it with the module's other names)."""
    srv = Misbehaving()
    yield srv
    srv.stop()


def small_image(text="hello"):
    """One layer: an Alpine os-release and one file holding TEXT (another TEXT, another manifest)."""
    from stowaway.ingest.imagebuilder import ImageBuilder

    return ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n", "app/x": text})


def require_bearer(server: Misbehaving, repo: str, token: str = "tok-123", user: str = "u", password: str = "p") -> list:
    """Docker Hub / Harbor style: REPO's routes answer 401 with a Bearer challenge naming /token on SERVER,
    whose token service gives TOKEN for Basic USER:PASSWORD. Returns the list of (path, Authorization) the
    token service was asked with."""
    import base64

    realm = f"http://{server.host}/token"
    for path, handler in list(server.routes.items()):
        if path.startswith(f"/v2/{repo}/"):
            def guarded(req, handler=handler):
                if req.headers.get("Authorization") != f"Bearer {token}":
                    return 401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg",'
                                                     f'scope="repository:{repo}:pull"'}, b""
                return handler(req)
            server.routes[path] = guarded
    asked: list = []
    basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def token_service(req):
        asked.append((req.path, req.headers.get("Authorization")))
        if req.headers.get("Authorization") != basic:
            return 401, {}, b""
        return 200, {"Content-Type": "application/json"}, ('{"token": "%s"}' % token).encode()
    server.routes["/token"] = token_service
    return asked


def serve_image(server: Misbehaving, repo: str, tag: str, builder, layer_compression="gzip"):
    """Routes that serve an ImageBuilder image the way a registry does. Returns (blobs, manifest digest)."""
    blobs, mdigest, _ = builder.oci_blobs(layer_compression)
    manifest = blobs[mdigest]
    media = "application/vnd.oci.image.manifest.v1+json"
    for ref in (tag, mdigest):
        server.routes[f"/v2/{repo}/manifests/{ref}"] = lambda req, m=manifest: (
            200, {"Content-Type": media, "Docker-Content-Digest": mdigest}, m)
    for digest, data in blobs.items():
        if digest != mdigest:
            server.routes[f"/v2/{repo}/blobs/{digest}"] = lambda req, d=data: (200, {}, d)
    server.routes["/v2/"] = lambda req: (200, {}, b"{}")
    return blobs, mdigest


def http_get(url: str) -> bytes:
    return urllib.request.urlopen(url, timeout=5).read()

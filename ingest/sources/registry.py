"""`registry:HOST/REPO:TAG` (or `@sha256:…`): images pulled from an OCI distribution registry.

The manifest (OCI or Docker v2, image or index / manifest list) is fetched with every media type in
Accept, verified against its digest, and handed to the archive reader's `Layout`, which already knows
how to turn manifests and configs into images: each platform of an index becomes its own image,
linked to the index. Layers are offered lazily (`open` is only called for a layer whose diff_id the
database does not hold) and stream from the HTTP response straight into the layer walker, which
verifies their digest as they pass. Nothing is written to disk. A rescan first asks whether the tag
still names the manifest it scanned, by one HEAD (`head_digest`, below).

Authentication follows the registry's `WWW-Authenticate` challenge: Basic, or a Bearer token fetched
from the realm it names (anonymously, or with the credentials). Credentials come from the options
(CLI or policy), the environment (STOWAWAY_REGISTRY_USER / _PASSWORD, or per host
STOWAWAY_REGISTRY_<HOST>_USER / _PASSWORD with the host upper-cased and non-alphanumerics as '_'),
or the user's Docker config.json; they are never stored in the database.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urljoin, urlparse

from ..failures import plain
from ..model import ImageSpec, ScanError
from ..streams import Limits
from . import INDEX_TYPES, MANIFEST_TYPES, REF_ANNOTATION, LayerBlob, SourceFailure

log = logging.getLogger("stowaway.registry")

MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES + INDEX_TYPES)
SCHEMA1_TYPES = ("application/vnd.docker.distribution.manifest.v1+json",
                 "application/vnd.docker.distribution.manifest.v1+prettyjws")
DEFAULT_MAX_MANIFEST = 4 << 20
RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_REDIRECTS = 5
DIGEST_RE = re.compile(r"^(sha256|sha512):[0-9a-f]{32,128}$")


class RegistryError(ScanError):
    """A registry answered something we cannot use; the message names the host and what was asked."""


@dataclass(frozen=True)
class Reference:
    host: str
    repository: str
    tag: str = ""
    digest: str = ""
    scheme: str = ""  # "http" or "https" when the user wrote one; "" lets the client decide

    @property
    def ref(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}" + (f"@{self.digest}" if self.digest else f":{self.tag or 'latest'}")


HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                     r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def split_scheme(text: str) -> tuple[str, str]:
    """('http'|'https'|'', rest) for a registry written as users type it: https://HOST[:PORT][/...]."""
    lower = text.lower()
    for scheme in ("https", "http"):
        if lower.startswith(scheme + "://"):
            return scheme, text[len(scheme) + 3:]
    return "", text


def parse_registry(text: str) -> tuple[str, str]:
    """(host[:port], scheme) of `HOST[:PORT]`, `https://HOST[:PORT]` or `http://HOST[:PORT]` (plain HTTP).
    A path after the host (`/v2/`) is refused rather than dropped."""
    scheme, rest = split_scheme(text.strip())
    host = rest.rstrip("/")
    if host.endswith("/v2"):
        host = host[:-3]
    if not host or "/" in host or not HOST_RE.match(host):
        raise ScanError(f"{text}: expected a registry as HOST[:PORT], https://HOST[:PORT] or http://HOST[:PORT]")
    return host, scheme


def parse_reference(text: str) -> Reference:
    """'[https://|http://]HOST[:PORT]/REPO[:TAG|@DIGEST]'. The host is the first component; it must look
    like one."""
    scheme, text = split_scheme(text)
    host, sep, rest = text.partition("/")
    if not sep or not rest or not (scheme or "." in host or ":" in host or host == "localhost"):
        raise ScanError(f"registry:{text}: expected HOST/REPOSITORY[:TAG|@DIGEST] (HOST with a dot or a port)")
    digest = ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise ScanError(f"registry:{text}: invalid digest {digest[:80]!r}")
    tag = ""
    slash, colon = rest.rfind("/"), rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
    if not re.match(r"^[a-z0-9]+(?:[._\-/][a-z0-9]+)*$", rest):
        raise ScanError(f"registry:{text}: invalid repository name {rest!r}")
    if host in ("docker.io", "index.docker.io"):  # Docker Hub's API host, and its implicit library/ namespace
        host = "registry-1.docker.io"
        rest = rest if "/" in rest else f"library/{rest}"
    return Reference(host, rest, tag or ("" if digest else "latest"), digest, scheme)


# --- credentials ---------------------------------------------------------------------------------------

def _env_key(host: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", host.upper())


def _docker_config_auth(host: str, warn: bool = True) -> tuple[str, str] | None:
    path = os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")
    try:
        with open(path, encoding="utf-8") as fh:
            conf = json.load(fh)
    except (OSError, ValueError):
        return None
    auths = conf.get("auths") or {}
    for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                return user, password
            except (ValueError, UnicodeDecodeError):
                if warn:
                    log.warning("%s: unreadable 'auth' entry for %s; ignored", path, host)
        if entry.get("username"):
            return entry["username"], entry.get("password", "")
    if host in (conf.get("credHelpers") or {}) or conf.get("credsStore"):
        if warn:
            log.warning("%s: credential helpers are not supported; %s is accessed without them", path, host)
    return None


def credentials_for(host: str, options: dict, warn: bool = True) -> tuple[str, str] | None:
    """Options (CLI / policy), then environment (per host, then global), then Docker's config.json."""
    conf = registry_options(host, options)
    if conf.get("username"):
        return conf["username"], conf.get("password", "")
    key = _env_key(host)
    for user_var, pass_var in ((f"STOWAWAY_REGISTRY_{key}_USER", f"STOWAWAY_REGISTRY_{key}_PASSWORD"),
                               ("STOWAWAY_REGISTRY_USER", "STOWAWAY_REGISTRY_PASSWORD")):
        if os.environ.get(user_var):
            return os.environ[user_var], os.environ.get(pass_var, "")
    return _docker_config_auth(host, warn)


def registry_options(host: str, options: dict) -> dict:
    """Top-level options, overlaid with the ones under registries."HOST" (policy file)."""
    conf = {k: v for k, v in options.items() if k != "registries"}
    conf.update((options.get("registries") or {}).get(host) or {})
    return conf


# --- the client ------------------------------------------------------------------------------------------

class BlobReader:
    """A blob's HTTP body as a file object (compressed bytes as stored: no transfer decoding)."""

    def __init__(self, response, what: str):
        self.response = response
        self.raw = response.raw
        self.what = what

    def read(self, n: int = -1) -> bytes:
        import requests
        import urllib3

        try:
            return self.raw.read(None if n is None or n < 0 else n, decode_content=False)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            raise RegistryError(f"{self.what}: download failed ({plain(exc, 200)})") from None

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.response.close()


class RegistryClient:
    """The OCI distribution API of one registry host, through one requests.Session."""

    def __init__(self, host: str, username: str = "", password: str = "", insecure: bool = False,
                 ca: str = "", timeout: float = 30.0, retries: int = 4, backoff: float = 0.5,
                 max_manifest: int = DEFAULT_MAX_MANIFEST, scheme: str = "", sleep=time.sleep):
        import requests

        self.host = host
        self.auth = (username, password) if username else None
        self.insecure = insecure
        # per request: REQUESTS_CA_BUNDLE would override a Session-wide verify setting
        self.verify = False if insecure else (ca or True)
        self.timeout = (min(timeout, 10.0), timeout)
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.max_manifest = max_manifest
        self.sleep = sleep
        # insecure without a scheme: unverified https first, plain http when the server does not speak TLS
        self.scheme = scheme or "https"
        self.scheme_known = bool(scheme) or not insecure
        self.session = requests.Session()
        self.session.max_redirects = MAX_REDIRECTS
        self.session.trust_env = True
        self.tokens: dict[str, str] = {}  # scope -> bearer token
        self.basic = False  # the registry asked for Basic
        self.requests = 0
        if insecure:
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    @classmethod
    def from_options(cls, host: str, options: dict) -> "RegistryClient":
        conf = registry_options(host, options)
        creds = credentials_for(host, options) or ("", "")
        return cls(host, creds[0], creds[1], insecure=bool(conf.get("insecure")), ca=conf.get("ca") or "",
                   timeout=float(conf.get("timeout") or 30), retries=int(conf.get("retries", 4)),
                   backoff=float(conf.get("backoff", 0.5)),
                   max_manifest=int(conf.get("max_manifest") or DEFAULT_MAX_MANIFEST), scheme=conf.get("scheme") or "")

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"

    # --- HTTP with auth, retries and bounded redirects -----------------------------------------------
    def request(self, method: str, path: str, what: str, scope: str = "", headers: dict | None = None,
                stream: bool = False, ok=(200,)):
        import requests

        url = path if path.startswith("http") else self.url(path)
        attempt = 0
        authed_once = False
        while True:
            hdrs = dict(headers or {})
            token = self.tokens.get(scope)
            if token:
                hdrs["Authorization"] = f"Bearer {token}"
            try:
                self.requests += 1
                resp = self.session.request(method, url, headers=hdrs, stream=True, timeout=self.timeout,
                                            verify=self.verify, auth=self.auth if self.basic and not token else None)
            except requests.Timeout as exc:
                if attempt < self.retries:
                    attempt += 1
                    self.sleep(self._delay(attempt, None))
                    continue
                raise RegistryError(f"{what}: {self.host} timed out ({_short(exc)})") from None
            except requests.TooManyRedirects:
                raise RegistryError(f"{what}: too many redirects (more than {MAX_REDIRECTS})") from None
            except (requests.exceptions.SSLError, requests.ConnectionError) as exc:
                if not self.scheme_known and url.startswith(f"https://{self.host}/"):
                    self.scheme, self.scheme_known = "http", True
                    url = "http://" + url[len("https://"):]
                    continue
                if not isinstance(exc, requests.exceptions.SSLError):
                    if attempt < self.retries:
                        attempt += 1
                        self.sleep(self._delay(attempt, None))
                        continue
                    raise RegistryError(f"{what}: {self.host} connection failed ({_short(exc)})") from None
                raise RegistryError(f"{what}: TLS error talking to {self.host} ({_short(exc)}); use a CA bundle"
                                    " (ca = ...) or, knowingly, insecure = true") from None
            self.scheme_known = True
            if resp.status_code == 401 and not authed_once:
                challenge = resp.headers.get("WWW-Authenticate", "")
                _discard(resp)  # the authenticated request goes on the same connection (no second TLS handshake)
                authed_once = True
                if self._authenticate(challenge, scope, what):
                    continue
                raise RegistryError(f"{what}: authentication required by {self.host}"
                                    + ("" if self.auth else " (no credentials found)"))
            if resp.status_code in RETRY_STATUSES and attempt < self.retries:
                attempt += 1
                delay = self._delay(attempt, resp.headers.get("Retry-After"))
                _discard(resp)
                self.sleep(delay)
                continue
            if resp.status_code not in ok:
                status = resp.status_code
                detail = _error_detail(resp)
                resp.close()
                reason = {401: "authentication failed", 403: "access denied", 404: "not found",
                          429: "rate limited (too many requests)"}.get(status, "error")
                raise RegistryError(f"{what}: {self.host} answered {status} ({reason})" + (f": {detail}" if detail else ""))
            if method == "HEAD":
                resp.close()
            return resp

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), 300.0)
            except ValueError:
                from email.utils import parsedate_to_datetime

                try:
                    return max(0.0, min(parsedate_to_datetime(retry_after).timestamp() - time.time(), 300.0))
                except (TypeError, ValueError):
                    pass
        return min(self.backoff * (2 ** (attempt - 1)), 30.0)

    def _authenticate(self, challenge: str, scope: str, what: str) -> bool:
        import requests

        kind, _, params = challenge.partition(" ")
        kind = kind.lower()
        if kind == "basic":
            if not self.auth:
                return False
            self.basic = True
            return True
        if kind != "bearer":
            return False
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.get("realm")
        if not realm:
            raise RegistryError(f"{what}: {self.host} sent a Bearer challenge without a realm")
        query = {"service": fields.get("service", "")}
        if scope or fields.get("scope"):
            query["scope"] = scope or fields["scope"]
        try:
            resp = self.session.get(realm, params=query, auth=self.auth, timeout=self.timeout, verify=self.verify)
        except requests.RequestException as exc:
            raise RegistryError(f"{what}: token request to {urlparse(realm).netloc} failed ({_short(exc)})") from None
        if resp.status_code != 200:
            raise RegistryError(f"{what}: token service {urlparse(realm).netloc} answered {resp.status_code}"
                                + (" (bad credentials?)" if resp.status_code in (401, 403) else ""))
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise RegistryError(f"{what}: token service {urlparse(realm).netloc} returned no token")
        self.tokens[scope] = token
        return True

    # --- API ----------------------------------------------------------------------------------------
    def _bounded_body(self, resp, what: str, limit: int) -> bytes:
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            resp.close()
            raise RegistryError(f"{what}: {length} bytes is larger than the {limit}-byte limit for manifests")
        chunks, total = [], 0
        try:
            for chunk in resp.iter_content(65536):
                total += len(chunk)
                if total > limit:
                    raise RegistryError(f"{what}: larger than the {limit}-byte limit for manifests")
                chunks.append(chunk)
        except RegistryError:
            raise
        except Exception as exc:
            raise RegistryError(f"{what}: download failed ({_short(exc)})") from None
        finally:
            resp.close()
        return b"".join(chunks)

    def manifest(self, repo: str, ref: str) -> tuple[str, bytes, str]:
        """(media type, body, digest) of a manifest, by tag or digest; the digest is verified."""
        what = f"{self.host}/{repo}{'@' if ref.startswith('sha') and ':' in ref else ':'}{ref}: manifest"
        resp = self.request("GET", f"/v2/{repo}/manifests/{ref}", what, scope=f"repository:{repo}:pull",
                            headers={"Accept": MANIFEST_ACCEPT}, stream=True)
        media = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        header_digest = resp.headers.get("Docker-Content-Digest", "")
        body = self._bounded_body(resp, what, self.max_manifest)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if DIGEST_RE.match(ref) and not _digest_matches(body, ref):
            raise RegistryError(f"{what}: content does not match the digest asked for")
        if header_digest and DIGEST_RE.match(header_digest) and not _digest_matches(body, header_digest):
            raise RegistryError(f"{what}: content does not match Docker-Content-Digest {header_digest}")
        if DIGEST_RE.match(ref):
            digest = ref
        try:
            doc = json.loads(body)
        except ValueError:
            raise RegistryError(f"{what}: not JSON") from None
        if not isinstance(doc, dict):
            raise RegistryError(f"{what}: not a manifest")
        media = doc.get("mediaType") or media
        if media in SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
            raise RegistryError(f"{what}: Docker schema 1 manifests are not supported (re-push the image)")
        return media, body, digest

    def head_manifest(self, repo: str, ref: str) -> tuple[str, str, int]:
        resp = self.request("HEAD", f"/v2/{repo}/manifests/{ref}", f"{self.host}/{repo}:{ref}: manifest",
                            scope=f"repository:{repo}:pull", headers={"Accept": MANIFEST_ACCEPT})
        return (resp.headers.get("Docker-Content-Digest", ""), resp.headers.get("Content-Type", ""),
                int(resp.headers.get("Content-Length") or 0))

    def blob(self, repo: str, digest: str, limit: int | None = None) -> bytes:
        what = f"{self.host}/{repo}@{digest}: blob"
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", what, scope=f"repository:{repo}:pull", stream=True)
        body = self._bounded_body(resp, what, limit or self.max_manifest)
        if not _digest_matches(body, digest):
            raise RegistryError(f"{what}: content does not match its digest")
        return body

    def open_blob(self, repo: str, digest: str) -> BlobReader:
        what = f"{self.host}/{repo}@{digest}: layer"
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", what, scope=f"repository:{repo}:pull", stream=True)
        return BlobReader(resp, what)

    def _paged(self, path: str, key: str, what: str, scope: str, page: int) -> Iterator[str]:
        url = f"{path}?n={page}"
        seen = set()
        while url:
            if url in seen:
                raise RegistryError(f"{what}: pagination loops")
            seen.add(url)
            resp = self.request("GET", url, what, scope=scope, stream=True)
            body = self._bounded_body(resp, what, self.max_manifest)
            try:
                items = (json.loads(body) or {}).get(key) or []
            except (ValueError, AttributeError):
                raise RegistryError(f"{what}: not JSON") from None
            yield from (x for x in items if isinstance(x, str))
            nxt = resp.links.get("next", {}).get("url") if hasattr(resp, "links") else None
            url = urljoin(self.url(path), nxt) if nxt else ""
            if url and urlparse(url).netloc != self.host:
                raise RegistryError(f"{what}: pagination link leaves {self.host}")

    def catalog(self, page: int = 100) -> Iterator[str]:
        return self._paged("/v2/_catalog", "repositories", f"{self.host}: catalog", "registry:catalog:*", page)

    def tags(self, repo: str, page: int = 100) -> Iterator[str]:
        return self._paged(f"/v2/{repo}/tags/list", "tags", f"{self.host}/{repo}: tags", f"repository:{repo}:pull",
                           page)


def _discard(resp, limit: int = 1 << 16) -> None:
    """Closes an answer whose body is not wanted (a 401 challenge, a 5xx before a retry). A small body is read
    to its end first, so that the connection goes back to the session's pool (keep-alive) instead of being
    dropped; a large or unreadable one is not read, and its connection closes."""
    length = resp.headers.get("Content-Length")
    try:
        if length and length.isdigit() and int(length) <= limit:
            for _ in resp.iter_content(limit):
                pass
    except Exception:  # the connection is closed with the response: nothing was needed from it
        pass
    resp.close()


def _digest_matches(body: bytes, digest: str) -> bool:
    algo, _, hexd = digest.partition(":")
    return algo in ("sha256", "sha512") and hashlib.new(algo, body).hexdigest() == hexd


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return text[:200]


def _error_detail(resp) -> str:
    try:
        if int(resp.headers.get("Content-Length") or 0) > 65536:
            return ""
        errors = resp.json().get("errors") or []
        return "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors[:3])[:300]
    except Exception:
        return ""


# --- the source ------------------------------------------------------------------------------------------

def _with_scheme(ref: Reference, options: dict) -> dict:
    if ref.scheme:  # written by the user: wins over a stored or configured scheme
        registries = dict(options.get("registries") or {})
        registries[ref.host] = {**(registries.get(ref.host) or {}), "scheme": ref.scheme}
        options = {**options, "registries": registries}
    return options


def manifest_identity(location: str, **options) -> tuple[str, str] | None:
    """(reference as a scan names the image, manifest digest) by one manifest GET; None for an index (each
    platform is its own image, named by the manifests the index lists)."""
    ref = parse_reference(location)
    client = RegistryClient.from_options(ref.host, _with_scheme(ref, options))
    media, body, digest = client.manifest(ref.repository, ref.ref)
    if media in INDEX_TYPES or b'"manifests"' in body:
        return None
    return str(ref), digest


def registry_events(text: str, location: str, limits: Limits, client: RegistryClient | None = None, **options):
    ref = parse_reference(location)
    options = _with_scheme(ref, options)
    client = client or RegistryClient.from_options(ref.host, options)
    repo = ref.repository
    display = str(ref)
    media, body, digest = client.manifest(repo, ref.ref)
    fetched = {digest: body}
    manifests = {digest}  # digests that name manifests, fetched from /manifests/, not /blobs/

    def read(name: str) -> bytes:
        algo_hex = name.removeprefix("blobs/").replace("/", ":", 1)
        if algo_hex in fetched:
            data = fetched[algo_hex]
        elif algo_hex in manifests:
            _, data, _ = client.manifest(repo, algo_hex)
        else:
            data = client.blob(repo, algo_hex, limits.max_json)
        if algo_hex in manifests:
            try:  # an index's children are manifests too
                for child in (json.loads(data).get("manifests") or []):
                    if isinstance(child, dict) and isinstance(child.get("digest"), str):
                        manifests.add(child["digest"])
            except (ValueError, AttributeError):
                pass
        return data

    from .archive import Layout

    layout = Layout(read, text, limits)
    top = {"mediaType": media, "digest": digest, "size": len(body), "annotations": {REF_ANNOTATION: display}}
    offered: set[str] = set()
    for spec in layout.oci_images({"manifests": [top]}):
        if isinstance(spec, SourceFailure):
            yield spec
            continue
        assert isinstance(spec, ImageSpec)
        for d in spec.layers:
            if d.key in offered:
                continue
            offered.add(d.key)
            if d.media_type.endswith("nondistributable.v1.tar+gzip") or "foreign" in d.media_type:
                yield SourceFailure(display, f"{display}: layer {d.index} is a foreign layer; it cannot be pulled")
                break
            yield LayerBlob(key=d.key, digest=d.digest, diff_id=d.diff_id, size=d.size,
                            open=functools.partial(client.open_blob, repo, d.digest))
        else:
            yield spec


# --- a rescan's question: does the tag still name the manifest it scanned? ------------------------------

class _Declined(Exception):
    """The quick HEAD cannot answer exactly as RegistryClient would: RegistryClient is asked instead."""


PROBE_TOKEN_LIMIT = 1 << 20


def head_digest(location: str, **options) -> tuple[str, str, str] | None:
    """(reference as a scan names the image, the manifest digest the registry gives for it, its media type),
    by a HEAD of the manifest (its Docker-Content-Digest header: nothing downloaded), through the standard
    library's HTTP client, with the same credentials, CA and authentication flow as RegistryClient. This is
    what a rescan asks to learn whether a tag has moved, and it does not load `requests` (about 0.1 s of
    CPU, half of an unchanged registry image's rescan). Go-containerregistry's `crane digest` asks the same
    way. None when this way cannot answer as RegistryClient would (a proxy or a netrc file in the
    environment, `insecure` without a scheme, a redirect, a status other than 200 or 401, no valid
    Docker-Content-Digest, a media type that is not a manifest's or an index's, any network or TLS error):
    the caller then asks RegistryClient, which reads the manifest, retries, and says what went wrong."""
    ref = parse_reference(location)
    probe = None
    try:
        probe = _Probe(ref.host, _with_scheme(ref, options))
        digest, media = probe.head_manifest(ref.repository, ref.ref)
    except Exception as exc:  # any surprise: the full client answers instead, with its own retries and messages
        log.debug("%s: quick manifest HEAD declined (%s: %s)", ref, exc.__class__.__name__, str(exc)[:200])
        return None
    finally:
        if probe is not None:
            probe.close()
    return str(ref), digest, media


class _Probe:
    """The few requests of `head_digest` on http.client connections (one per scheme and host, kept alive)."""

    def __init__(self, host: str, options: dict):
        env = {k.lower() for k, v in os.environ.items() if v}
        if env & {"http_proxy", "https_proxy", "all_proxy"}:
            raise _Declined("a proxy is configured")  # requests would use it (trust_env)
        home = os.path.expanduser("~")
        if os.environ.get("NETRC") or any(os.path.exists(os.path.join(home, n)) for n in (".netrc", "_netrc")):
            raise _Declined("a netrc file may hold credentials")  # requests would send them
        conf = registry_options(host, options)
        self.host = host
        self.insecure = bool(conf.get("insecure"))
        if self.insecure and not conf.get("scheme"):
            raise _Declined("insecure without a scheme")  # the full client finds out https or http
        self.scheme = conf.get("scheme") or "https"
        self.ca = conf.get("ca") or ""
        # a socket timeout for every step: RegistryClient's connect timeout (a registry that does not answer the
        # HEAD in time is asked again by RegistryClient, with its own timeouts and retries)
        self.timeout = min(float(conf.get("timeout") or 30), 10.0)
        # no warnings here: when this way cannot answer, RegistryClient reads the credentials again and warns once
        creds = credentials_for(host, options, warn=False) or ("", "")
        self.auth = creds if creds[0] else None
        self.conns: dict = {}

    def _context(self):
        import ssl

        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        # as requests verifies: the CA given, else REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, else certifi's bundle
        where = self.ca or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if not where:
            import certifi

            where = certifi.where()
        if os.path.isdir(where):
            return ssl.create_default_context(capath=where)
        return ssl.create_default_context(cafile=where)

    def send(self, method: str, url: str, headers: dict) -> tuple[int, dict, bytes]:
        import http.client

        parts = urlparse(url)
        key = (parts.scheme, parts.netloc)
        conn = self.conns.get(key)
        if conn is None:
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(parts.netloc, timeout=self.timeout, context=self._context())
            elif parts.scheme == "http":
                conn = http.client.HTTPConnection(parts.netloc, timeout=self.timeout)
            else:
                raise _Declined(f"scheme {parts.scheme!r}")
            self.conns[key] = conn
        conn.request(method, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                     headers={"User-Agent": "stowaway", **headers})
        resp = conn.getresponse()
        body = resp.read(PROBE_TOKEN_LIMIT + 1)
        if len(body) > PROBE_TOKEN_LIMIT:
            raise _Declined("an answer larger than expected")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body

    def head_manifest(self, repo: str, ref: str) -> tuple[str, str]:
        url = f"{self.scheme}://{self.host}/v2/{repo}/manifests/{ref}"
        headers = {"Accept": MANIFEST_ACCEPT}
        status, answer, _ = self.send("HEAD", url, headers)
        if status == 401:
            headers["Authorization"] = self._authorization(answer.get("www-authenticate", ""), f"repository:{repo}:pull")
            status, answer, _ = self.send("HEAD", url, headers)
        if status != 200:
            raise _Declined(f"answered {status}")
        digest = answer.get("docker-content-digest", "")
        media = (answer.get("content-type") or "").split(";")[0].strip()
        if not DIGEST_RE.match(digest):
            raise _Declined("no Docker-Content-Digest")
        if media not in MANIFEST_TYPES + INDEX_TYPES:
            raise _Declined(f"media type {media[:80]!r}")
        return digest, media

    def _authorization(self, challenge: str, scope: str) -> str:
        """The Authorization header RegistryClient would send after this challenge."""
        kind, _, params = challenge.partition(" ")
        kind = kind.lower()
        basic = ("Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode("latin1")).decode()
                 if self.auth else "")  # as requests encodes Basic credentials
        if kind == "basic" and basic:
            return basic
        if kind != "bearer":
            raise _Declined(f"challenge {kind[:40]!r}" + ("" if self.auth else " without credentials"))
        from urllib.parse import urlencode

        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.get("realm") or ""
        if not realm.startswith(("https://", "http://")):
            raise _Declined("a Bearer challenge without a usable realm")
        query = {"service": fields.get("service", "")}
        if scope or fields.get("scope"):
            query["scope"] = scope or fields["scope"]
        status, _, body = self.send("GET", realm + ("&" if "?" in realm else "?") + urlencode(query),
                                    {"Authorization": basic} if basic else {})
        if status != 200:
            raise _Declined(f"token service answered {status}")
        doc = json.loads(body)
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise _Declined("no token")
        return f"Bearer {token}"

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()

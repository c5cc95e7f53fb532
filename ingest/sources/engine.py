"""`docker:REF` (one image) and `docker:*` (every tagged image) from a Docker engine, through the docker SDK.

The engine's `save` output is a tar stream; it goes straight into the archive reader's streamed path
(no temp file), so layers are analyzed as they pass. DOCKER_HOST (or `docker_host` in the options)
picks the engine, so a podman socket (unix:///run/podman/podman.sock) works the same way.
"""
from __future__ import annotations

import os
from typing import Callable
from urllib.parse import quote

from ..failures import plain
from ..model import ImageSpec, ScanError
from ..streams import Limits
from . import SourceFailure
from .archive import _streamed


class ChunkReader:
    """A forward-only file object over an iterator of byte chunks (the SDK's streamed response)."""

    def __init__(self, chunks, what: str):
        self.chunks = iter(chunks)
        self.buf = b""
        self.what = what

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        import docker

        try:
            while n is None or n < 0 or len(self.buf) < n:
                chunk = next(self.chunks, None)
                if chunk is None:
                    break
                self.buf += chunk
        except (docker.errors.DockerException, OSError) as exc:
            raise ScanError(f"{self.what}: the engine stopped sending the image ({exc})") from None
        except Exception as exc:  # requests/urllib3 errors from the streamed response
            raise ScanError(f"{self.what}: the engine stopped sending the image ({plain(exc, 200)})") \
                from None
        if n is None or n < 0:
            data, self.buf = self.buf, b""
        else:
            data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close:
            close()


def engine_client(options: dict):
    try:
        import docker
    except ImportError:
        raise ScanError("docker: sources need the 'docker' package") from None
    base_url = options.get("docker_host") or os.environ.get("DOCKER_HOST")
    try:
        if base_url:
            return docker.DockerClient(base_url=base_url, timeout=int(options.get("docker_timeout", 120)))
        return docker.from_env(timeout=int(options.get("docker_timeout", 120)))
    except docker.errors.DockerException as exc:
        raise ScanError(f"cannot reach the Docker engine{' at ' + base_url if base_url else ''}: {exc}") from None


def local_references(client) -> list[str]:
    """Every image of the engine, by its first tag (untagged ones by ID), once each."""
    refs = []
    for image in client.images.list():
        refs.append(image.tags[0] if image.tags else image.id)
    return sorted(dict.fromkeys(refs))


def engine_identities(location: str, options: dict) -> list[list[str]]:
    """[[reference, image id, platform], ...] of `docker:LOCATION` as a scan of its `save` output would name
    them (the first tag, else the reference given; the id is the config digest), from the API alone: two
    small GETs on a local engine's socket (the SDK, heavier to load, for TLS or ssh hosts)."""
    base_url = options.get("docker_host") or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    timeout = float(options.get("docker_timeout", 120))
    get = _plain_api(base_url, timeout)
    if get is None or os.environ.get("DOCKER_TLS_VERIFY"):
        client = engine_client(options)
        images = [(i.tags, i.id) for i in client.images.list()] if location == "*" else []
        refs = sorted(dict.fromkeys(t[0] if t else i for t, i in images)) if location == "*" else [location]
        inspect = [client.images.get(ref).attrs for ref in refs]
    else:
        listed = get("/images/json") if location == "*" else []
        refs = sorted(dict.fromkeys(_tags(x)[0] if _tags(x) else x["Id"] for x in listed)) if location == "*" \
            else [location]
        inspect = [get(f"/images/{quote(ref, safe='/:@')}/json") for ref in refs]
    out = []
    for ref, attrs in zip(refs, inspect):
        platform = "/".join(x for x in (attrs.get("Os"), attrs.get("Architecture"), attrs.get("Variant")) if x)
        tags = _tags(attrs)
        out.append([tags[0] if tags else ref, attrs["Id"], platform])
    return out


def _tags(attrs: dict) -> list[str]:
    return [t for t in attrs.get("RepoTags") or [] if t != "<none>:<none>"]


def _plain_api(base_url: str, timeout: float):
    """GET path -> JSON on an engine reached by a unix socket or plain TCP, or None for other hosts."""
    import http.client
    import json
    import socket

    make: Callable[[], http.client.HTTPConnection]
    if base_url.startswith("unix://"):
        path = base_url[len("unix://"):]

        class Conn(http.client.HTTPConnection):
            def connect(self):
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)

        make = lambda: Conn("localhost", timeout=timeout)  # noqa: E731
    elif base_url.startswith(("tcp://", "http://")):
        netloc = base_url.split("://", 1)[1].rstrip("/")
        make = lambda: http.client.HTTPConnection(netloc, timeout=timeout)  # noqa: E731
    else:
        return None

    def get(url: str):
        conn = make()
        try:
            conn.request("GET", url)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise ScanError(f"the Docker engine answered {resp.status} to {url}")
            return json.loads(body)
        finally:
            conn.close()

    return get


def engine_events(text: str, location: str, limits: Limits, client=None, **options):
    import docker

    client = client or engine_client(options)
    try:
        refs = local_references(client) if location == "*" else [location]
    except docker.errors.DockerException as exc:
        raise ScanError(f"{text}: the Docker engine did not list its images ({exc})") from None
    if not refs:
        raise ScanError(f"{text}: the Docker engine holds no images")
    for ref in refs:
        label = f"docker:{ref}"
        try:
            image = client.images.get(ref)
            chunks = image.save(chunk_size=1 << 20, named=bool(image.tags))
        except docker.errors.ImageNotFound:
            yield SourceFailure(label, f"{label}: no such image in the Docker engine")
            continue
        except docker.errors.DockerException as exc:
            yield SourceFailure(label, f"{label}: the Docker engine refused it ({str(exc)[:300]})")
            continue
        reader = ChunkReader(chunks, label)
        try:
            for ev in _streamed(label, "docker-archive", ref, "", limits, fileobj=reader):
                if isinstance(ev, ImageSpec):
                    if ev.reference.startswith(label + "#"):  # saved by ID: no RepoTags
                        ev.reference = ref
                    ev.source = text if location != "*" else label
                yield ev
        except ScanError as exc:
            yield SourceFailure(label, str(exc))
        finally:
            reader.close()

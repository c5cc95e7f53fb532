"""The plugin's static assets, served compressed and cached: plotly.min.js (from the plotly package:
pages work offline and need no CDN) and stowaway.css.

Each is read once, gzipped once (plotly: 4.8 MB -> about a third), and answered with an ETag, a week's
Cache-Control and `Vary: Accept-Encoding`: gzip to clients that accept it, 304 to a matching
If-None-Match. Datasette's own /-/static-plugins/ serving sends neither compression nor an ETag.
"""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

from datasette.utils.asgi import Response

STATIC = Path(__file__).parent / "static"
_CACHE: dict[str, tuple[bytes, bytes, str]] = {}


def _plotly() -> bytes:
    import plotly

    return (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()


SOURCES = {
    "plotly.min.js": (_plotly, "application/javascript; charset=utf-8"),
    "stowaway.css": (lambda: (STATIC / "stowaway.css").read_bytes(), "text/css; charset=utf-8"),
    "stowaway.js": (lambda: (STATIC / "stowaway.js").read_bytes(), "application/javascript; charset=utf-8"),
}


def version(name: str) -> str:
    """A short content hash, for URLs that change when the file does (`stowaway.css?v=...`)."""
    return _load(name)[2].strip('"')[:10]


def _load(name: str) -> tuple[bytes, bytes, str]:
    if name not in _CACHE:
        raw = SOURCES[name][0]()
        _CACHE[name] = (raw, gzip.compress(raw, compresslevel=6), '"' + hashlib.sha256(raw).hexdigest()[:20] + '"')
    return _CACHE[name]


def serve(name: str, request) -> Response:
    raw, packed, etag = _load(name)
    headers = {"Cache-Control": "public, max-age=604800", "Vary": "Accept-Encoding", "ETag": etag}
    if etag in (request.headers.get("if-none-match") or ""):
        return Response("", status=304, headers=headers)
    ctype = SOURCES[name][1]
    accepts = [p.split(";")[0].strip() for p in (request.headers.get("accept-encoding") or "").lower().split(",")]
    if "gzip" in accepts:
        headers["Content-Encoding"] = "gzip"
        return Response(packed, content_type=ctype, headers=headers)
    return Response(raw, content_type=ctype, headers=headers)


async def asset(datasette, request):
    return serve(request.url_vars["asset"], request)

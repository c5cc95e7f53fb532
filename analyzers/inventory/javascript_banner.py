"""JavaScript libraries shipped without a package.json, known by the banner comment at their top.

`static/js/jquery.min.js` starts with '/*! jQuery v3.4.1 | ...': the version the vulnerability
matcher needs. Only files whose name starts like a known library are read, and only their head. A
file inside an npm package that package.json already reports under the same name (jquery's own
dist/jquery.min.js) is not reported again.
"""
from __future__ import annotations

import posixpath
import re

from ..base import Analyzer, register
from ._app import collect_packages, package

HEAD = 4096
MAX_SIZE = 16 << 20
_V = r"v?(\d+(?:\.\d+)+(?:-[0-9A-Za-z.]+)?)"

# (npm name, file-name prefix, banner); the first that matches wins, so narrower banners come first
BANNERS = [
    ("jquery-ui", "jquery", re.compile(r"jQuery UI - " + _V)),
    ("jquery-migrate", "jquery", re.compile(r"jQuery Migrate - " + _V)),
    ("jquery", "jquery", re.compile(r"jQuery (?:JavaScript Library )?" + _V)),
    ("bootstrap", "bootstrap", re.compile(r"Bootstrap " + _V)),
    ("angular", "angular", re.compile(r"@license AngularJS " + _V)),
    ("react-dom", "react-dom", re.compile(r"@license React(?: DOM)? " + _V)),
    ("react", "react", re.compile(r"@license React " + _V)),
    ("vue", "vue", re.compile(r"Vue\.js " + _V)),
    ("moment", "moment", re.compile(r"//! moment\.js\s*\n//! version : " + _V)),
    ("underscore", "underscore", re.compile(r"Underscore\.js " + _V)),
    ("backbone", "backbone", re.compile(r"Backbone\.js " + _V)),
    ("handlebars", "handlebars", re.compile(r"handlebars " + _V, re.I)),
    ("knockout", "knockout", re.compile(r"Knockout JavaScript library " + _V)),
    ("dompurify", "purify", re.compile(r"DOMPurify " + _V)),
    ("lodash", "lodash", re.compile(r"@license\s+(?:\*\s+)?(?:Lo-Dash|lodash|Lodash) " + _V)),
]
PREFIXES = tuple(sorted({b[1] for b in BANNERS}))


def identify(base: str, head: str) -> tuple[str, str] | None:
    low = base.lower()
    for name, prefix, banner in BANNERS:
        if not low.startswith(prefix):
            continue
        m = banner.search(head)
        if m:
            return name, m.group(1)
    return None


@register
class JavaScriptBanners(Analyzer):
    name = "javascript-banner"
    version = 1
    risk = "software"
    consumes = ("owned_files", "npm")  # npm: its package.json packages are not repeated
    produces = ("packages",)

    def required(self, path, info):
        base = path[path.rfind("/") + 1:].lower()
        return base.endswith(".js") and base.startswith(PREFIXES) and info.size <= MAX_SIZE

    def analyze(self, file):
        base = posixpath.basename(file.path)
        found = identify(base, file.data[:HEAD].decode("utf-8", "replace"))
        if not found:
            return []
        return [package("npm", found[0], found[1], file.path, metadata={"source": "banner"})]

    def collect(self, ctx, layers):
        covered = {(posixpath.dirname(p.path), p.name) for p in ctx.packages
                   if p.ecosystem == "npm" and p.path.endswith("/package.json")}
        for p in collect_packages(ctx, layers, self.name):
            folder = posixpath.dirname(p.path)
            while (folder, p.name) not in covered and folder != "/":
                folder = posixpath.dirname(folder)
            if (folder, p.name) not in covered:
                yield p

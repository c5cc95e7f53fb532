"""Ruby gems from the gemspecs RubyGems writes on install (`specifications/NAME-VERSION.gemspec`).

These are generated Ruby, always in the same shape (`s.name = "rake".freeze`), so a few regular
expressions read them; the gemspec is never evaluated.
"""
from __future__ import annotations

import re

from ..base import Analyzer, register
from ._app import collect_packages, package, warning

MAX_SIZE = 1 << 20
_STR = r"""["']([^"']+)["'](?:\.freeze)?"""
NAME = re.compile(r"^\s*\w+\.name\s*=\s*" + _STR, re.M)
VERSION = re.compile(r"^\s*\w+\.version\s*=\s*" + _STR, re.M)
LICENSES = re.compile(r"^\s*\w+\.licenses?\s*=\s*\[?([^\n\]]*)", re.M)


@register
class RubyGems(Analyzer):
    name = "ruby-gemspec"
    version = 1
    risk = "software"
    consumes = ("owned_files",)
    produces = ("packages",)

    def required(self, path, info):
        return path.endswith(".gemspec") and "/specifications/" in path

    def analyze(self, file):
        if len(file.data) > MAX_SIZE:
            return [warning(file.path, f"{file.path}: {len(file.data)} bytes, larger than {MAX_SIZE}; not parsed")]
        text = file.text()
        name, version = NAME.search(text), VERSION.search(text)
        if not name or not version:
            return []
        licenses = []
        for m in LICENSES.finditer(text):
            licenses += re.findall(r"""["']([^"']+)["']""", m.group(1))
        return [package("gem", name.group(1), version.group(1), file.path, licenses=licenses)]

    def collect(self, ctx, layers):
        return collect_packages(ctx, layers, self.name)

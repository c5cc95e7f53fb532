"""Masks secrets in the image config before the image row is stored.

The pipeline stores the runtime config (Env, Labels, Cmd) and the history; a password in
`ENV DB_PASSWORD=…` would land in the database and the report. `redact` is the last step of the
evaluate stage (ingest/evaluate.py), on every scan whatever risk types were chosen, after every
analyzer (they see the real config in memory): it replaces each secret value it finds in the config
by its masked form. If it fails, the scan fails and nothing of the image is stored.
"""
from __future__ import annotations

import re
from dataclasses import replace

from .analyzer import SecretScanner

# crypt(3) hashes ('echo admin:$6$salt$hash | chpasswd -e' in a RUN line): crackable offline, so
# they are credentials too, though no secret rule reports them (the settings baseline does)
CRYPT_HASH = re.compile(r"\$(?:1|2[abxy]|5|6|y|gy|7|sha1|md5)\$[./A-Za-z0-9$,=]{8,}")


def _mask_hash(m: re.Match) -> str:
    text = m.group(0)
    return text[: text.index("$", 1) + 1] + "…[hash masked]"


def redact(spec, scanner: SecretScanner) -> int:
    """Replaces every secret found in spec.config (and the layer commands copied from it); returns how many."""
    found = {raw: scanner.masked(hit) for _s, _n, _l, hit, raw in scanner.config_hits(spec) if raw}
    for h in spec.config.get("history") or []:
        for m in CRYPT_HASH.finditer(h.get("created_by", "") if isinstance(h, dict) else ""):
            found.setdefault(m.group(0), _mask_hash(m))
    if not found:
        return 0
    # longest first, so a secret that contains another is replaced whole
    order = sorted(found, key=len, reverse=True)

    def clean(text):
        if not isinstance(text, str):
            return text
        for raw in order:
            if raw in text:
                text = text.replace(raw, found[raw])
        return text

    for section in ("config", "container_config"):
        runtime = spec.config.get(section)
        if not isinstance(runtime, dict):
            continue
        if isinstance(runtime.get("Env"), list):
            runtime["Env"] = [clean(e) for e in runtime["Env"]]
        if isinstance(runtime.get("Labels"), dict):
            runtime["Labels"] = {k: clean(v) for k, v in runtime["Labels"].items()}
        if isinstance(runtime.get("Cmd"), list):
            runtime["Cmd"] = [clean(c) for c in runtime["Cmd"]]
    for h in spec.config.get("history") or []:
        if isinstance(h, dict) and "created_by" in h:
            h["created_by"] = clean(h["created_by"])
    spec.layers[:] = [replace(d, created_by=clean(d.created_by)) if d.created_by else d for d in spec.layers]
    return len(found)

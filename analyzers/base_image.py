"""Base images: is the image built on an approved base, which one, and how many layers are its own.

An approved base is an image already in the database, named by reference or digest on the command
line (`--approved-base REF`) or in the policy (`[base_images] approved = [...]`). The image is built
on it when the base's layer chain (diff_ids, bottom first) is a prefix of the image's own chain:
layers are content-addressed, so a shared prefix is the same bytes, whatever the tags say.

The base must have been scanned before the images built on it (REPORT.md): in one `oci:DIR` run
the images are scanned in index order, so a base listed after its children is unknown to them.
An approved REF that names the image being scanned is resolved from the image itself.

Every image gets exactly one base_image finding: approved 1 (pass), 0 (fail, with the closest known
base: the image in the database sharing the longest diff_id prefix) or None when no approved base
is configured (not_applicable). The base boundary is also guessed from the history, as Trivy does:
the last CMD/ENTRYPOINT entry that a layer-creating step follows ends the base image.
"""
from __future__ import annotations

import re

from stowaway.ingest.model import Finding

from .base import Analyzer, register

CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit
_CMD = re.compile(r"^(?:/bin/sh -c #\(nop\)\s+|\|\d+ )?(?:CMD|ENTRYPOINT)\b")


def guess_boundary(history: list, layer_count: int) -> int | None:
    """How many bottom layers the base image holds, judged from the history; None when it cannot tell.

    A Dockerfile ends with CMD/ENTRYPOINT, so the base's last one is the CMD/ENTRYPOINT entry that
    the derived image's first layer-creating step follows. Counting only non-empty entries maps the
    history onto layers; when their number disagrees with the layers, the history is not trusted.
    """
    if not isinstance(history, list):
        return None
    entries = [h for h in history if isinstance(h, dict)]
    if sum(1 for h in entries if not h.get("empty_layer")) != layer_count:
        return None
    boundary = None
    layers_before = 0
    pending = None  # layers below the latest CMD/ENTRYPOINT seen, until a layer follows it
    for h in entries:
        if h.get("empty_layer"):
            if _CMD.match((h.get("created_by") or "").strip()):
                pending = layers_before
            continue
        if pending is not None:
            boundary, pending = pending, None
        layers_before += 1
    return boundary if boundary else None


def _chain_of(db, image_id: int) -> list[str]:
    return [r[0] for r in db.execute("SELECT l.diff_id FROM image_layers il JOIN layers l ON l.id = il.layer_id"
                                     " WHERE il.image_id = ? ORDER BY il.position", [image_id])]


def _aliases(ref: str) -> list[str]:
    """Other spellings of a Docker Hub reference: 'debian' is 'debian:latest' is 'docker.io/library/debian:latest'."""
    if ref.startswith("sha256:"):
        return []
    name = ref
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in name:
        name += ":latest"
    short = name
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if short.startswith(prefix):
            short = short[len(prefix):]
            break
    else:
        first = short.split("/", 1)[0]
        if "/" in short and ("." in first or ":" in first or first == "localhost"):
            return [name] if name != ref else []  # another registry: only the implied tag
    if short.startswith("library/"):
        short = short[len("library/"):]
    official = "/" not in short.split(":", 1)[0].split("@", 1)[0]
    full = [f"{p}{'library/' if official else ''}{short}" for p in ("docker.io/", "index.docker.io/",
                                                                     "registry-1.docker.io/")]
    return [a for a in dict.fromkeys([name, short, *full]) if a != ref]


def _images_named(db, ref: str) -> list[tuple[int, str, str]]:
    """(id, reference, manifest digest) of the stored images REF names: a reference or any digest."""
    sql = ("SELECT id, reference, manifest_digest FROM images WHERE reference = ? OR manifest_digest = ?"
           " OR config_digest = ? OR index_digest = ? ORDER BY id")
    rows = db.execute(sql, [ref, ref, ref, ref]).fetchall()
    if not rows:
        for alias in _aliases(ref):
            rows = db.execute(sql, [alias] * 4).fetchall()
            if rows:
                break
    return [tuple(r) for r in rows]


def _approved_refs(policy: dict) -> tuple[list[str], list[str]]:
    conf = policy.get("base_images") or {}
    if not isinstance(conf, dict):
        return [], ["base_images: must be a table; ignored"]
    refs = conf.get("approved") or []
    if isinstance(refs, str):
        refs = [refs]
    if not isinstance(refs, list):
        return [], ["base_images.approved: must be a list of image references; ignored"]
    good = [r.strip() for r in refs if isinstance(r, str) and r.strip()]
    problems = [f"base_images.approved: {r!r} is not an image reference; ignored" for r in refs
                if not (isinstance(r, str) and r.strip())]
    return list(dict.fromkeys(good)), problems


@register
class BaseImage(Analyzer):
    name = "base-image"
    version = 1
    risk = "base_image"
    stage = "evaluate"  # compares with the images stored in the database
    needs_db = True
    produces = ("findings",)
    reads_layers = False

    def collect(self, ctx, layers):
        spec = ctx.spec
        chain = [d.diff_id for d in spec.layers]
        boundary = guess_boundary(spec.config.get("history"), len(chain))
        refs, problems = _approved_refs(ctx.policy)
        for p in problems:
            ctx.warn(f"{self.name}: {p}")
        detail = {"approved": None, "matched": None, "own_layers": None, "closest": None,
                  "guessed_boundary": boundary}
        if boundary is not None:
            detail["own_layers"] = len(chain) - boundary

        match = self._match(ctx, refs, chain) if refs else None
        if match:
            ref, reference, digest, base_len = match
            own = len(chain) - base_len
            detail.update(approved=1, matched=reference, matched_ref=ref, matched_digest=digest, own_layers=own,
                          base_layers=base_len, closest=reference, closest_shared_layers=base_len)
            yield Finding(kind="base_image", title=f"Built on approved base image {reference} ({own} own layers)",
                          severity="negligible", status="pass", rule="approved-base", detail=detail)
            return

        closest = self._closest(ctx, chain)
        if closest:
            detail["closest"], detail["closest_shared_layers"] = closest
        if not refs:
            what = f"; guessed base: the bottom {boundary} layer(s)" if boundary else ""
            yield Finding(kind="base_image", title=f"Base image not checked: no approved base configured{what}",
                          severity="unknown", status="not_applicable", rule="approved-base", detail=detail)
            return
        detail["approved"] = 0
        near = f"; closest known image: {closest[0]} ({closest[1]} shared layers)" if closest else ""
        yield Finding(kind="base_image", title=f"Base image not approved{near}", severity="medium", status="fail",
                      rule="approved-base", detail=detail)

    def _match(self, ctx, refs: list[str], chain: list[str]):
        """(REF as named, stored reference, manifest digest, base layer count) of the longest approved prefix."""
        spec = ctx.spec
        best = None
        for ref in refs:
            candidates: list[tuple[str, str, list[str]]] = []
            if ref in (spec.reference, spec.manifest_digest, spec.config_digest) or (
                    spec.index_digest and ref == spec.index_digest):
                candidates.append((spec.reference, spec.manifest_digest, chain))
            if ctx.db is not None:
                for image_id, reference, digest in _images_named(ctx.db, ref):
                    candidates.append((reference, digest, _chain_of(ctx.db, image_id)))
            if not candidates:
                ctx.warn(f"{self.name}: approved base {ref} is not in the database; scan it before the images"
                         " built on it")
                continue
            for reference, digest, base in candidates:
                if not base:
                    ctx.warn(f"{self.name}: approved base {ref} has no layers; ignored")
                    continue
                if len(base) <= len(chain) and chain[:len(base)] == base:
                    if best is None or len(base) > best[3]:
                        best = (ref, reference, digest, len(base))
        return best

    def _closest(self, ctx, chain: list[str]):
        """(reference, shared layers) of the stored image sharing the longest diff_id prefix, if any.

        Images that hold this image's whole chain and more are built on it, not under it, and the
        image itself (same manifest) is not its own base. The prefix is narrowed one position at a
        time through the image_layers index, so a database where thousands of images share a base
        layer costs a query per shared layer, not one per image.
        """
        if ctx.db is None or not chain:
            return None
        db = ctx.db
        ids = dict(db.execute(f"SELECT diff_id, id FROM layers WHERE diff_id IN ({','.join('?' * len(chain))})",
                              chain).fetchall())
        levels: list[set[int]] = []  # levels[k]: images whose first k+1 layers are this image's
        current: set[int] | None = None
        for position, diff_id in enumerate(chain):
            layer_id = ids.get(diff_id)
            if layer_id is None:
                break
            found = {r[0] for r in db.execute("SELECT image_id FROM image_layers WHERE layer_id = ? AND position = ?",
                                              [layer_id, position])}
            current = found if current is None else current & found
            if not current:
                break
            levels.append(current)
        if not levels:
            return None
        info: dict[int, tuple[str, str, int]] = {}  # id -> (reference, manifest digest, layer count)
        full = levels[-1] if len(levels) == len(chain) else set()  # images holding this whole chain
        for shared in range(len(levels), 0, -1):
            pool = [i for i in levels[shared - 1] if i not in info]
            for start in range(0, len(pool), CHUNK):
                part = pool[start:start + CHUNK]
                info.update((r[0], (r[1], r[2], r[3])) for r in db.execute(
                    "SELECT i.id, i.reference, i.manifest_digest,"
                    " (SELECT COUNT(*) FROM image_layers il WHERE il.image_id = i.id)"
                    f" FROM images i WHERE i.id IN ({','.join('?' * len(part))})", part))
            eligible = [i for i in levels[shared - 1] if i in info and info[i][1] != ctx.spec.manifest_digest
                        and not (i in full and info[i][2] > len(chain))]
            if eligible:
                # a true base (all of its layers shared) first, then the smallest, then the newest
                best = max(eligible, key=lambda i: (info[i][2] == shared, -info[i][2], i))
                return info[best][0], shared
        return None

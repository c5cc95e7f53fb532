"""File information: regular files and bytes of the final filesystem, the 50 largest, per-layer figures.

Needs no file contents: it reads the per-layer entry lists and the squashed filesystem, so a cached
layer costs nothing here.
"""
from __future__ import annotations

import heapq

from stowaway.ingest.layers import WHITEOUT
from stowaway.ingest.model import DIR, HARDLINK, REG, SYMLINK

from .base import Analyzer, Fact, register

TOP = 50


@register
class FileInformation(Analyzer):
    name = "files"
    version = 1
    risk = "files"
    produces = ("facts",)
    reads_layers = False

    def collect(self, ctx, layers):
        total_files = total_size = dirs = links = hidden = 0
        per_layer = [{"layer_index": i, "files": 0, "size": 0, "visible_files": 0, "visible_size": 0, "whiteouts": 0}
                     for i in range(len(ctx.layer_entries))]
        candidates: list[tuple[int, str, int]] = []
        for info, layer in ctx.fs.walk():
            if info.type in (REG, HARDLINK):
                total_files += 1
                total_size += info.size
                if info.path.rsplit("/", 1)[-1].startswith("."):
                    hidden += 1
                if layer >= 0:
                    per_layer[layer]["visible_files"] += 1
                    per_layer[layer]["visible_size"] += info.size
                candidates.append((info.size, info.path, layer))
            elif info.type == DIR:
                dirs += 1
            elif info.type == SYMLINK:
                links += 1
        for i, entries in enumerate(ctx.layer_entries):
            stats = per_layer[i]
            for e in entries:
                if e[1] in (REG, HARDLINK):
                    stats["files"] += 1
                    stats["size"] += e[2]
                elif e[1] == WHITEOUT:
                    stats["whiteouts"] += 1
        # walk() goes in path order, and nlargest keeps that order among equal sizes
        top = [{"path": p, "size": s, "layer_index": l}
               for s, p, l in heapq.nlargest(TOP, candidates, key=lambda c: c[0])]
        yield Fact("files", {"total_files": total_files, "total_size": total_size, "directories": dirs,
                             "symlinks": links, "hidden_files": hidden, "largest": top, "layers": per_layer})


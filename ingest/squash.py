"""The one place where whiteouts and opaque directories are resolved.

`Filesystem.build(layers)` stacks the per-layer entry lists bottom to top, as overlayfs would show
them, and keeps for every visible path the layer that put it there. Everything that asks "is this
file still in the final image?" or "which layer added it?" asks here.
"""
from __future__ import annotations

import posixpath
from itertools import groupby, repeat
from operator import itemgetter, methodcaller
from typing import Iterable, Iterator

from .layers import OPAQUE, WHITEOUT, gc_paused
from .model import DIR, HARDLINK, REG, SYMLINK, FileInfo

MAX_SYMLINK_HOPS = 40
_RUN = 16  # entries of one directory from which a run is added at once
_PATH, _KIND, _RPARTITION = itemgetter(0), itemgetter(1), methodcaller("rpartition", "/")
_FIRST, _SECOND, _LAST, _ENTRY_OF = itemgetter(0), itemgetter(1), itemgetter(-1), itemgetter(2)


# A node is a list [entry, layer, children]: the entry tuple that put the path there, that layer's index,
# and for a directory its children by name (None for anything else). A list is made in C: a class's
# __init__ per node was a third of the squash of an image of many files.
_Node = list
ENTRY, LAYER, CHILDREN = 0, 1, 2


class Filesystem:
    def __init__(self):
        self.root: _Node = [("/", DIR, 0, 0o755, 0, 0, ""), -1, {}]
        self.layer_count = 0

    @classmethod
    def build(cls, layers: Iterable[list[tuple]]) -> "Filesystem":
        fs = cls()
        with gc_paused():  # a tree without cycles: no collection while it grows
            for index, entries in enumerate(layers):
                fs.apply(index, entries)
        return fs

    # --- building -------------------------------------------------------------------------------
    def _dir(self, path: str, layer: int) -> dict[str, _Node]:
        """The children of the directory at `path`, creating what is missing on the way."""
        node = self.root
        children: dict[str, _Node] = node[CHILDREN] if node[CHILDREN] is not None else {}
        for part in path.strip("/").split("/") if path != "/" else ():
            child = children.get(part)
            if child is None or child[CHILDREN] is None:
                # a missing parent, or a file where a directory is now needed: the directory wins
                child = [(posixpath.join(node[ENTRY][0], part), DIR, 0, 0o755, 0, 0, ""), layer, {}]
                children[part] = child
            node = child
            children = child[CHILDREN]
        return children

    def apply(self, index: int, entries: list[tuple]) -> None:
        self.layer_count = max(self.layer_count, index + 1)
        # Whiteouts and opaque markers hide what lower layers had; they never hide this layer's own
        # entries, so they are applied first, whatever their order in the tar. (Their presence is
        # asked in one pass in C: most layers have none.)
        kinds = set(map(itemgetter(1), entries))
        markers = WHITEOUT in kinds or OPAQUE in kinds
        for e in entries if markers else ():
            if e[1] == WHITEOUT:
                parent = self._find(posixpath.dirname(e[0]))
                if parent is not None and parent[CHILDREN] is not None:
                    parent[CHILDREN].pop(posixpath.basename(e[0]), None)
            elif e[1] == OPAQUE:
                node = self._find(e[0])
                if node is not None and node[CHILDREN] is not None:
                    node[CHILDREN] = {}
        if markers:
            self._add_each(index, entries, markers)
            return
        # a tar lists a directory's entries together: each run of entries of one directory (grouped in C by
        # their parent) is added at once when it holds no directory entry and is not at the root: the parent's
        # children are looked up once, and the run goes in by one dict.update of nodes made in C (the same
        # assignments, in the same order, as one at a time; a per-entry loop was most of the squash of a
        # layer of many files). Short runs, and runs with a directory or the root, are added one at a time.
        parts = list(map(_RPARTITION, map(_PATH, entries)))
        for folder, grouped in groupby(zip(map(_FIRST, parts), map(_LAST, parts), entries), _FIRST):
            run = list(grouped)
            if len(run) < _RUN or not folder or DIR in set(map(_KIND, map(_ENTRY_OF, run))):
                self._add_each(index, list(map(_ENTRY_OF, run)), False)
                continue
            siblings = self._dir(folder or "/", index)
            siblings.update(zip(map(_SECOND, run), map(list, zip(map(_ENTRY_OF, run), repeat(index), repeat(None)))))

    def _add_each(self, index: int, entries: list[tuple], markers: bool) -> None:
        """`entries` added one at a time (markers, when the layer has any, are passed over: applied before)."""
        root = self.root
        last_dir, siblings = "", root[CHILDREN]
        for e in entries:
            kind = e[1]
            if markers and (kind == WHITEOUT or kind == OPAQUE):
                continue
            path = e[0]
            if path == "/":
                root[ENTRY], root[LAYER] = e, index
                continue
            cut = path.rfind("/")
            folder = path[:cut] or "/"
            if folder != last_dir:
                siblings, last_dir = self._dir(folder, index), folder
            name = path[cut + 1:]
            if kind == DIR:
                old = siblings.get(name)
                if old is not None and old[CHILDREN] is not None:
                    old[ENTRY], old[LAYER] = e, index  # metadata change; children stay
                    continue
                siblings[name] = [e, index, {}]
            else:
                siblings[name] = [e, index, None]

    # --- queries --------------------------------------------------------------------------------
    def _find(self, path: str) -> _Node | None:
        node = self.root
        if path in ("", "/"):
            return node
        for part in path.strip("/").split("/"):
            if node[CHILDREN] is None:
                return None
            node = node[CHILDREN].get(part)
            if node is None:
                return None
        return node

    def get(self, path: str) -> FileInfo | None:
        node = self._find(path)
        return None if node is None else _info(node[ENTRY])

    def layer_of(self, path: str) -> int | None:
        """The layer whose copy of `path` is the one visible in the final filesystem."""
        node = self._find(path)
        return None if node is None else node[LAYER]

    def visible(self, path: str, layer: int) -> bool:
        """Whether the copy of `path` that `layer` wrote is what the final image shows."""
        node = self._find(path)
        return node is not None and node[LAYER] == layer

    def exists(self, path: str) -> bool:
        return self._find(path) is not None

    def resolve(self, path: str) -> str | None:
        """Follows symlinks (in every component) inside the image, never out of it; None on a loop."""
        parts = [p for p in path.split("/") if p]
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()  # '..' at the root stays at the root: the image is the whole world
                continue
            current = "/" + "/".join(done + [part])
            node = self._find(current)
            if node is not None and node[ENTRY][1] == SYMLINK:
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    return None
                target = node[ENTRY][6]
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p] + parts
                continue
            done.append(part)
        return "/" + "/".join(done)

    def read_target(self, path: str) -> str | None:
        """The path of the regular file that `path` names after symlinks and hard links, if any."""
        real = self.resolve(path)
        if real is None:
            return None
        node = self._find(real)
        if node is None:
            return None
        if node[ENTRY][1] == HARDLINK:
            return node[ENTRY][6]
        return real if node[ENTRY][1] == REG else None

    def walk(self) -> Iterator[tuple[FileInfo, int]]:
        """Every visible entry with the layer that put it there (directories before their content)."""
        root = self.root
        stack = [root]
        while stack:
            node = stack.pop()
            if node is not root:
                yield _info(node[ENTRY]), node[LAYER]
            children = node[CHILDREN]
            if children:
                stack.extend(children[k] for k in sorted(children, reverse=True))

    def files(self) -> Iterator[tuple[FileInfo, int]]:
        for info, layer in self.walk():
            if info.type in (REG, HARDLINK):
                yield info, layer


def _info(e: tuple) -> FileInfo:
    return FileInfo(e[0], e[1], e[2], e[3], e[4], e[5], e[6])

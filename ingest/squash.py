"""The one place where whiteouts and opaque directories are resolved.

`Filesystem.build(layers)` stacks the per-layer entry lists bottom to top, as overlayfs would show
them, and keeps for every visible path the layer that put it there. Everything that asks "is this
file still in the final image?" or "which layer added it?" asks here.
"""
from __future__ import annotations

import posixpath
from typing import Iterable, Iterator

from .layers import OPAQUE, WHITEOUT, gc_paused
from .model import DIR, HARDLINK, REG, SYMLINK, FileInfo

MAX_SYMLINK_HOPS = 40


class _Node:
    __slots__ = ("entry", "layer", "children")

    def __init__(self, entry=None, layer=-1):
        self.entry = entry
        self.layer = layer
        self.children: dict[str, _Node] | None = None


class Filesystem:
    def __init__(self):
        self.root = _Node(("/", DIR, 0, 0o755, 0, 0, ""), -1)
        self.root.children = {}
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
        children: dict[str, _Node] = node.children if node.children is not None else {}
        for part in path.strip("/").split("/") if path != "/" else ():
            child = children.get(part)
            if child is None or child.children is None:
                # a missing parent, or a file where a directory is now needed: the directory wins
                child = _Node((posixpath.join(_path_of(node), part), DIR, 0, 0o755, 0, 0, ""), layer)
                child.children = {}
                children[part] = child
            node = child
            children = child.children
        return children

    def apply(self, index: int, entries: list[tuple]) -> None:
        self.layer_count = max(self.layer_count, index + 1)
        # Whiteouts and opaque markers hide what lower layers had; they never hide this layer's own
        # entries, so they are applied first, whatever their order in the tar.
        for e in entries:
            if e[1] == WHITEOUT:
                parent = self._find(posixpath.dirname(e[0]))
                if parent is not None and parent.children is not None:
                    parent.children.pop(posixpath.basename(e[0]), None)
            elif e[1] == OPAQUE:
                node = self._find(e[0])
                if node is not None and node.children is not None:
                    node.children = {}
        # a tar lists a directory's entries together: its children are looked up once for all of them
        # (an entry can only change its own directory's children, never replace that directory)
        last_dir, siblings = "", self.root.children
        for e in entries:
            kind = e[1]
            if kind in (WHITEOUT, OPAQUE):
                continue
            path = e[0]
            if path == "/":
                self.root.entry, self.root.layer = e, index
                continue
            cut = path.rfind("/")
            folder = path[:cut] or "/"
            if folder != last_dir:
                siblings, last_dir = self._dir(folder, index), folder
            name = path[cut + 1:]
            old = siblings.get(name)
            if kind == DIR:
                if old is not None and old.children is not None:
                    old.entry, old.layer = e, index  # metadata change; children stay
                    continue
                node = _Node(e, index)
                node.children = {}
            else:
                node = _Node(e, index)
            siblings[name] = node

    # --- queries --------------------------------------------------------------------------------
    def _find(self, path: str) -> _Node | None:
        node = self.root
        if path in ("", "/"):
            return node
        for part in path.strip("/").split("/"):
            if node.children is None:
                return None
            node = node.children.get(part)
            if node is None:
                return None
        return node

    def get(self, path: str) -> FileInfo | None:
        node = self._find(path)
        return None if node is None else _info(node.entry)

    def layer_of(self, path: str) -> int | None:
        """The layer whose copy of `path` is the one visible in the final filesystem."""
        node = self._find(path)
        return None if node is None else node.layer

    def visible(self, path: str, layer: int) -> bool:
        """Whether the copy of `path` that `layer` wrote is what the final image shows."""
        node = self._find(path)
        return node is not None and node.layer == layer

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
            if node is not None and node.entry[1] == SYMLINK:
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    return None
                target = node.entry[6]
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
        if node.entry[1] == HARDLINK:
            return node.entry[6]
        return real if node.entry[1] == REG else None

    def walk(self) -> Iterator[tuple[FileInfo, int]]:
        """Every visible entry with the layer that put it there (directories before their content)."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node is not self.root:
                yield _info(node.entry), node.layer
            if node.children:
                stack.extend(node.children[k] for k in sorted(node.children, reverse=True))

    def files(self) -> Iterator[tuple[FileInfo, int]]:
        for info, layer in self.walk():
            if info.type in (REG, HARDLINK):
                yield info, layer


def _path_of(node: _Node) -> str:
    return node.entry[0]


def _info(e: tuple) -> FileInfo:
    return FileInfo(e[0], e[1], e[2], e[3], e[4], e[5], e[6])

"""The shapes of image metadata, checked where the JSON comes in.

Manifests, indexes, image configs and `docker save`'s manifest.json come from whoever built the
image. A field of the wrong type (a number where the OCI image spec says string, an object where it
says list) fails that image with a sentence naming the field, instead of surfacing later as a Python
exception in whatever code first touches it. `null` counts as absent for optional fields, as Docker
writes it that way (`"Labels": null`).

Field types follow the OCI image spec (image-spec v1.1: manifest.md, image-index.md, config.md,
descriptor.md) and the Docker image spec v1.2 for `docker save`.
"""
from __future__ import annotations

import re
from typing import Any

from ..model import ScanError

DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
_NAMES = {type(None): "null", bool: "true/false", int: "a number", float: "a number", str: "a string",
          list: "a list", dict: "an object"}
_WANT = {str: "a string", int: "a whole number", list: "a list", dict: "an object", bool: "true or false"}
SUPPORTED_OS = ("linux", "")


def _describe(value: Any) -> str:
    return _NAMES.get(type(value), type(value).__name__)


def expect(value: Any, kind: type, where: str, required: bool = False) -> Any:
    """`value` if it is of `kind` (bool is not a number), None when absent and optional."""
    if value is None and not required:
        return None
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise ScanError(f"{where} is {_describe(value)}, not {_WANT[kind]}")
    return value


def _strings(value: Any, where: str, required: bool = False) -> list:
    items = expect(value, list, where, required) or []
    for i, item in enumerate(items):
        expect(item, str, f"{where}[{i}]", True)
    return items


def _string_map(value: Any, where: str) -> dict:
    items = expect(value, dict, where) or {}
    for k, v in items.items():
        expect(v, str, f"{where}[{k!r}]", False)
    return items


def _size(value: Any, where: str) -> None:
    if expect(value, int, where) is not None and value < 0:
        raise ScanError(f"{where} is negative")


def digest(value: Any, where: str) -> str:
    expect(value, str, where, True)
    if not DIGEST.fullmatch(value):
        raise ScanError(f"{where} {value[:80]!r} is not a sha256 or sha512 digest")
    return value


def descriptor(desc: Any, where: str) -> dict:
    expect(desc, dict, where, True)
    digest(desc.get("digest"), f"{where} digest")
    expect(desc.get("mediaType"), str, f"{where} mediaType")
    _size(desc.get("size"), f"{where} size")
    _string_map(desc.get("annotations"), f"{where} annotations")
    platform = expect(desc.get("platform"), dict, f"{where} platform") or {}
    for key in ("os", "architecture", "variant"):
        expect(platform.get(key), str, f"{where} platform.{key}")
    return desc


def manifest(doc: Any, where: str) -> dict:
    """An image manifest or an image index (`manifests` instead of `config` and `layers`)."""
    expect(doc, dict, where, True)
    expect(doc.get("mediaType"), str, f"{where} mediaType")
    if "manifests" in doc and "config" not in doc:
        for i, child in enumerate(expect(doc.get("manifests"), list, f"{where} manifests", True)):
            descriptor(child, f"{where} manifests[{i}]")
        return doc
    descriptor(doc.get("config"), f"{where} config")
    for i, layer in enumerate(expect(doc.get("layers"), list, f"{where} layers") or []):
        descriptor(layer, f"{where} layers[{i}]")
    return doc


RUNTIME_STRINGS = ("User", "WorkingDir", "StopSignal", "Image", "Hostname", "Domainname")
RUNTIME_LISTS = ("Env", "Cmd", "Entrypoint", "Shell", "OnBuild")
SHELL_FORM = ("Cmd", "Entrypoint")  # a plain string in configs written by old Docker versions
RUNTIME_OBJECTS = ("ExposedPorts", "Volumes", "Healthcheck")


def config(doc: Any, where: str) -> dict:
    """An image config. Refuses images of an OS other than Linux, the only kind Stowaway scans."""
    expect(doc, dict, where, True)
    for key in ("os", "architecture", "variant", "created", "author", "os.version"):
        expect(doc.get(key), str, f"{where} {key}")
    os_name = (doc.get("os") or "").lower()
    if os_name not in SUPPORTED_OS:
        label = "Windows" if os_name == "windows" else repr(doc["os"])
        raise ScanError(f"{label} images are not supported: {where} says os {doc['os']!r}; Stowaway scans Linux images")
    runtime = expect(doc.get("config"), dict, f"{where} config") or {}
    for key in RUNTIME_STRINGS:
        expect(runtime.get(key), str, f"{where} config.{key}")
    for key in RUNTIME_LISTS:
        value = runtime.get(key)
        if not (key in SHELL_FORM and isinstance(value, str)):
            _strings(value, f"{where} config.{key}")
    for key in RUNTIME_OBJECTS:
        expect(runtime.get(key), dict, f"{where} config.{key}")
    _string_map(runtime.get("Labels"), f"{where} config.Labels")
    health = runtime.get("Healthcheck") or {}
    _strings(health.get("Test"), f"{where} config.Healthcheck.Test")
    rootfs = expect(doc.get("rootfs"), dict, f"{where} rootfs", True)
    for i, d in enumerate(expect(rootfs.get("diff_ids"), list, f"{where} rootfs.diff_ids", True)):
        digest(d, f"{where} rootfs.diff_ids[{i}]")
    for i, h in enumerate(expect(doc.get("history"), list, f"{where} history") or []):
        expect(h, dict, f"{where} history[{i}]", True)
        for key in [k for k, v in h.items() if v is None]:
            del h[key]  # absent, as everything downstream reads it
        for key in ("created_by", "created", "comment", "author"):
            expect(h.get(key), str, f"{where} history[{i}].{key}")
        expect(h.get("empty_layer"), bool, f"{where} history[{i}].empty_layer")
    return doc


def save_entry(entry: Any, where: str) -> dict:
    """One entry of `docker save`'s manifest.json."""
    expect(entry, dict, where, True)
    expect(entry.get("Config"), str, f"{where} Config", True)
    _strings(entry.get("RepoTags"), f"{where} RepoTags")
    _strings(entry.get("Layers"), f"{where} Layers", True)
    return entry

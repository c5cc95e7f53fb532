"""Every field of a manifest, index, image config and docker-save manifest.json replaced by a value
of the wrong type: that image fails with one sentence (or scans, when the value is harmless), the
other image of the same archive is scanned, and no Python exception name reaches the user."""
from __future__ import annotations

import json
import os
import re

import pytest
from imagebuilder import ImageBuilder, sha256

from stowaway.ingest.db import connect
from stowaway.ingest.pipeline import Scanner

GOOD = ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.18.4\n", "a": "1"})
BAD = ImageBuilder().layer({"etc/os-release": "ID=debian\nVERSION_ID=12\n", "b": "2"}).layer({"c": "3"})

DEEP = json.loads("[" * 50 + "]" * 50)
WRONG = {"null": None, "int": -1, "str": "x", "list": [], "dict": {}, "bool": True, "deep": DEEP}
MANIFEST_PATHS = ["", "config", "config.digest", "config.size", "layers", "layers.0", "layers.0.digest",
                  "layers.0.size", "layers.0.mediaType", "mediaType", "schemaVersion"]
CONFIG_PATHS = ["", "os", "architecture", "created", "config", "config.Env", "config.Env.0", "config.User",
                "config.Labels", "config.Cmd", "config.Entrypoint", "config.Healthcheck", "config.ExposedPorts",
                "rootfs", "rootfs.diff_ids", "rootfs.diff_ids.0", "history", "history.0", "history.0.created_by",
                "history.0.empty_layer"]
INDEX_ENTRY_PATHS = ["", "digest", "mediaType", "annotations", "annotations.org.opencontainers.image.ref.name",
                     "platform", "size"]
SAVE_PATHS = ["", "Config", "RepoTags", "RepoTags.0", "Layers", "Layers.0"]
NO_EXCEPTION_NAME = re.compile(r"\b(TypeError|AttributeError|KeyError|ValueError|RecursionError|IndexError|"
                               r"FileNotFoundError|OverflowError|internal error)\b")


def set_path(doc, path: str, value):
    if not path:
        return value
    keys = path.split(".") if not path.startswith("annotations.") else ["annotations", path[len("annotations."):]]
    node = doc
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def blob(root, digest):
    return os.path.join(root, "blobs", *digest.split(":"))


def put(root, data: bytes) -> str:
    d = sha256(data)
    with open(blob(root, d), "wb") as fh:
        fh.write(data)
    return d


def oci_pair(tmp_path):
    root = str(tmp_path / "oci")
    GOOD.write_oci_layout(root, ref="good:1", layer_compression="none")
    BAD.write_oci_layout(root, ref="bad:1", layer_compression="none", append=True)
    index = json.load(open(os.path.join(root, "index.json")))
    return root, index


def assert_contained(outcomes, bad_expected_failed: bool | None = None):
    by_ref = {o.reference: o for o in outcomes}
    assert by_ref.get("good:1") and by_ref["good:1"].status == "done", outcomes
    for o in outcomes:
        if o.status == "failed":
            assert "\n" not in o.error and not NO_EXCEPTION_NAME.search(o.error), o.error
        for w in o.warnings:
            assert not NO_EXCEPTION_NAME.search(w), w


def scan(tmp_path, source):
    database = connect(str(tmp_path / "scan.db"))
    return Scanner(database).run([source])


@pytest.mark.parametrize("path", MANIFEST_PATHS)
@pytest.mark.parametrize("kind", sorted(WRONG))
def test_manifest_field_of_the_wrong_type(tmp_path, path, kind):
    root, index = oci_pair(tmp_path)
    entry = index["manifests"][1]
    manifest = json.load(open(blob(root, entry["digest"])))
    data = json.dumps(set_path(manifest, path, WRONG[kind])).encode()
    entry["digest"], entry["size"] = put(root, data), len(data)
    json.dump(index, open(os.path.join(root, "index.json"), "w"))
    assert_contained(scan(tmp_path, f"oci:{root}"))


def with_bad_config(tmp_path, change) -> str:
    """The pair's layout with the bad image's config changed by `change`, every digest kept consistent."""
    root, index = oci_pair(tmp_path)
    entry = index["manifests"][1]
    manifest = json.load(open(blob(root, entry["digest"])))
    config = json.load(open(blob(root, manifest["config"]["digest"])))
    cdata = json.dumps(change(config)).encode()
    manifest["config"]["digest"], manifest["config"]["size"] = put(root, cdata), len(cdata)
    data = json.dumps(manifest).encode()
    entry["digest"], entry["size"] = put(root, data), len(data)
    json.dump(index, open(os.path.join(root, "index.json"), "w"))
    return root


@pytest.mark.parametrize("path", CONFIG_PATHS)
@pytest.mark.parametrize("kind", sorted(WRONG))
def test_config_field_of_the_wrong_type(tmp_path, path, kind):
    root = with_bad_config(tmp_path, lambda config: set_path(config, path, WRONG[kind]))
    assert_contained(scan(tmp_path, f"oci:{root}"))


@pytest.mark.parametrize("path", INDEX_ENTRY_PATHS)
@pytest.mark.parametrize("kind", sorted(WRONG))
def test_index_entry_of_the_wrong_type(tmp_path, path, kind):
    root, index = oci_pair(tmp_path)
    set_path(index["manifests"][1], path, WRONG[kind]) if path else index["manifests"].__setitem__(1, WRONG[kind])
    json.dump(index, open(os.path.join(root, "index.json"), "w"))
    assert_contained(scan(tmp_path, f"oci:{root}"))


@pytest.mark.parametrize("path", SAVE_PATHS)
@pytest.mark.parametrize("kind", sorted(WRONG))
def test_docker_save_manifest_entry_of_the_wrong_type(tmp_path, path, kind):
    good = tmp_path / "g.tar"
    GOOD.write_docker_archive(good, ref="good:1")
    # both images in one archive: the second entry is the broken one
    import tarfile
    with tarfile.open(good) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isreg()}
    bad = tmp_path / "b.tar"
    BAD.write_docker_archive(bad, ref="bad:1")
    with tarfile.open(bad) as tf:
        bad_files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isreg()}
    manifest = json.loads(files["manifest.json"]) + json.loads(bad_files["manifest.json"])
    files.update({k: v for k, v in bad_files.items() if k != "manifest.json"})
    manifest[1] = set_path(manifest[1], path, WRONG[kind]) if path else WRONG[kind]
    files["manifest.json"] = json.dumps(manifest).encode()
    from stowaway.ingest.imagebuilder import _tar
    both = tmp_path / "both.tar"
    both.write_bytes(_tar(files))
    assert_contained(scan(tmp_path, f"docker-archive:{both}"))


@pytest.mark.parametrize("os_name, says", [("windows", "Windows images are not supported"),
                                           ("freebsd", "'freebsd' images are not supported")])
def test_an_image_of_another_os_fails_with_a_sentence(tmp_path, os_name, says):
    root = with_bad_config(tmp_path, lambda config: {**config, "os": os_name})
    outcomes = scan(tmp_path, f"oci:{root}")
    assert_contained(outcomes)
    bad = next(o for o in outcomes if o.reference == "bad:1")
    assert bad.status == "failed" and says in bad.error, bad.error


def test_a_windows_layer_fails_even_when_the_config_says_linux(tmp_path):
    win = ImageBuilder().layer({"Files/Windows/System32/cmd.exe": b"MZ", "Hives/Software_Base": b"regf"})
    root = str(tmp_path / "oci")
    GOOD.write_oci_layout(root, ref="good:1")
    win.write_oci_layout(root, ref="bad:1", append=True)
    outcomes = scan(tmp_path, f"oci:{root}")
    assert_contained(outcomes)
    bad = next(o for o in outcomes if o.reference == "bad:1")
    assert bad.status == "failed" and "Windows images are not supported" in bad.error, bad.error
    assert connect(str(tmp_path / "scan.db")).execute(
        "SELECT status FROM scans WHERE reference='bad:1'").fetchone()[0] == "failed"

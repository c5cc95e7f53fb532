"""Parse times of the OS package databases. `pytest tests/bench/test_os_inventory_speed.py --benchmark-enable`
prints them; without --benchmark-enable each runs once, as a test."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "analyzers" / "inventory"))

from conftest import SHARED  # noqa: E402
from ospkg_harness import bdb_file, ndb_file, rpm_header, sqlite_file  # noqa: E402

from stowaway.analyzers.inventory.dpkg import parse_status  # noqa: E402
from stowaway.analyzers.inventory.rpmdb import read_packages  # noqa: E402

BLOBS = [rpm_header(f"pkg{i}", "1.0", f"{i}.el7", files=[f"/usr/lib64/lib{i}.so.{j}" for j in range(40)], padding=6000)
         for i in range(500)]


@pytest.mark.parametrize("build", [bdb_file, ndb_file, sqlite_file], ids=["bdb", "ndb", "sqlite"])
def test_rpmdb_500_packages(benchmark, build):
    data = build(BLOBS)
    fmt, packages, problems = benchmark(read_packages, data)
    assert len(packages) == 500 and problems == []


@pytest.mark.skipif(not (SHARED / "samples" / "dpkg").exists(), reason="../shared/samples not present")
def test_dpkg_status_357_packages(benchmark):
    text = (SHARED / "samples" / "dpkg" / "ubuntu-18.04-texlive" / "status").read_text()
    packages, _ = benchmark(parse_status, text)
    assert len(packages) == 357

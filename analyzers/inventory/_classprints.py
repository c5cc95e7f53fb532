"""Java libraries recognised by their classes, for jars that carry no Maven metadata for them: shaded
or repackaged copies (log4j-core relocated to `com/acme/shaded/org/apache/logging/log4j/core/...`
inside an application jar) that pom.properties, the manifest and the file name all miss.

Each library has a marker class (its path below the library's package root); every distinct prefix
in front of that path is one copy (the empty prefix: not relocated). The version comes from what the
classes themselves hold:

* log4j-core: the JNDI features of its classes, which changed with each Log4Shell release. Facts,
  checked against the real log4j-core 2.19.0 jar of Debian's liblog4j2-java and the release notes of
  log4j 2.15.0-2.17.1 (logging.apache.org/log4j/2.x/security.html):
    - lookup/JndiLookup.class exists from 2.0-beta9 (absent: older, or removed by hand as mitigation);
    - net/JndiManager.class exists from 2.1;
    - 2.15.0: JndiManager restricts protocols and hosts ('allowedJndiProtocols', 'Invalid JNDI URI - {}');
    - 2.16.0: JNDI off by default, JndiManager reads 'log4j2.enableJndi';
    - 2.17.0: one switch per use, JndiLookup checks 'log4j2.enableJndiLookup';
    - 2.17.1: the JDBC appender's DataSourceConnectionSource checks 'log4j2.enableJndiJdbc'.
  The backports 2.12.2-2.12.4 and 2.3.1-2.3.2 carry the same switches and are reported as the 2.1x
  release with the same features (same fixes), with the range in the metadata.
* jackson-databind: cfg/PackageVersion.class holds its version string.
* fastjson: JSON.class holds its `VERSION` constant.
* commons-collections 3.x: functors/InvokerTransformer.class reads 'enableUnsafeSerialization' from
  3.2.2 on (the fix of its deserialization gadget); without it, 3.2.1 or older. commons-collections4:
  its InvokerTransformer is java/io/Serializable in 4.0 only (4.1 removed it, COLLECTIONS-580).
* shiro-core: up to 1.2.4 mgt/AbstractRememberMeManager.class holds the published default cookie key
  'kPH+bIxk5D2deZiIxcaaaA==' (CVE-2016-4437, fixed in 1.2.5 by a generated key); later copies are not
  reported, since their classes do not pin a version.

Reported as maven packages with metadata `detected_by: class-fingerprint`, a `confidence` (high:
the classes pin the version; medium: a range, reported as its newest release so that only what that
whole range suffers is matched) and `relocated_to` (the prefix, '' when not relocated).
"""
from __future__ import annotations

import re
import zipfile
from typing import Callable

LOG4J = "org/apache/logging/log4j/core/"
MAX_CLASS = 1 << 20

# library -> (maven coordinates, marker path below the prefix)
MARKERS = {
    "log4j-core": ("org.apache.logging.log4j:log4j-core", LOG4J + "LoggerContext.class"),
    "jackson-databind": ("com.fasterxml.jackson.core:jackson-databind",
                         "com/fasterxml/jackson/databind/ObjectMapper.class"),
    "fastjson": ("com.alibaba:fastjson", "com/alibaba/fastjson/JSON.class"),
    "commons-collections": ("commons-collections:commons-collections",
                            "org/apache/commons/collections/functors/InvokerTransformer.class"),
    "commons-collections4": ("org.apache.commons:commons-collections4",
                             "org/apache/commons/collections4/functors/InvokerTransformer.class"),
    "shiro-core": ("org.apache.shiro:shiro-core", "org/apache/shiro/mgt/AbstractRememberMeManager.class"),
}


def _log4j(read: Callable[[str], bytes | None], prefix: str) -> tuple[str, str, str, dict]:
    """(version, range, confidence, extra metadata) of a log4j-core copy."""
    root = prefix + LOG4J
    lookup = read(root + "lookup/JndiLookup.class")
    manager = read(root + "net/JndiManager.class") or b""
    jdbc = read(root + "appender/db/jdbc/DataSourceConnectionSource.class") or b""
    extra = {"jndi_lookup": "present" if lookup is not None else "absent"}
    if b"log4j2.enableJndiJdbc" in jdbc:
        return "2.17.1", ">=2.17.1 (or 2.12.4, 2.3.2)", "medium", extra
    if lookup is not None and b"log4j2.enableJndiLookup" in lookup:
        return "2.17.0", "2.17.0 (or 2.12.3, 2.3.1)", "high", extra
    if b"log4j2.enableJndi" in manager:
        return "2.16.0", "2.16.0 (or 2.12.2)", "high", extra
    if b"allowedJndiProtocols" in manager or b"Invalid JNDI URI" in manager:
        return "2.15.0", "2.15.0", "high", extra
    if manager:
        return "2.14.1", "2.1 - 2.14.1", "medium", extra
    if lookup is not None:
        return "2.0.2", "2.0-beta9 - 2.0.2", "medium", extra
    return "2.0-beta8", "< 2.0-beta9, or JndiLookup.class removed", "low", extra


_UTF8_VERSION = re.compile(rb"\x01\x00[\x03-\x10](\d+\.\d+\.\d+(?:\.\d+)?(?:[.-][A-Za-z0-9]+)?)")


def _constant_version(data: bytes | None, pattern: bytes) -> str:
    """A version string from a class's constant pool (UTF8 entries: tag 1, a two-byte length)."""
    if not data:
        return ""
    for m in _UTF8_VERSION.finditer(data):
        if re.fullmatch(pattern, m.group(1)):
            return m.group(1).decode()
    return ""


def _jackson(read, prefix):
    v = _constant_version(read(prefix + "com/fasterxml/jackson/databind/cfg/PackageVersion.class"), rb"2\.\d+\.\d+.*")
    return (v, v, "high", {}) if v else None


def _fastjson(read, prefix):
    v = _constant_version(read(prefix + "com/alibaba/fastjson/JSON.class"), rb"1\.[12]\.\d+.*")
    return (v, v, "high", {}) if v else None


def _collections(read, prefix):
    data = read(prefix + "org/apache/commons/collections/functors/InvokerTransformer.class") or b""
    if b"enableUnsafeSerialization" in data:
        return "3.2.2", ">=3.2.2", "medium", {}
    return "3.2.1", "<=3.2.1", "medium", {}


def _collections4(read, prefix):
    data = read(prefix + "org/apache/commons/collections4/functors/InvokerTransformer.class") or b""
    if b"java/io/Serializable" in data:
        return "4.0", "4.0", "high", {}
    return "4.1", ">=4.1", "medium", {}


def _shiro(read, prefix):
    data = read(prefix + "org/apache/shiro/mgt/AbstractRememberMeManager.class") or b""
    if b"kPH+bIxk5D2deZiIxcaaaA==" in data:
        return "1.2.4", "<=1.2.4", "medium", {}
    return None


VERSIONERS = {"log4j-core": _log4j, "jackson-databind": _jackson, "fastjson": _fastjson,
              "commons-collections": _collections, "commons-collections4": _collections4, "shiro-core": _shiro}


def fingerprint(z: zipfile.ZipFile, infos: list[zipfile.ZipInfo], known: set[str]) -> list[tuple[str, str, dict]]:
    """(maven name, version, metadata) of each library copy found by its classes in an open jar, except
    the artifacts in `known` (those its Maven metadata, manifest or file name already identify)."""
    by_name = {i.filename: i for i in infos}

    def read(name: str) -> bytes | None:
        info = by_name.get(name)
        if info is None or info.file_size > MAX_CLASS:
            return None
        try:
            with z.open(info) as fh:
                return fh.read(MAX_CLASS)
        except Exception:  # noqa: BLE001 - a damaged class only loses this evidence
            return None

    out = []
    for lib, (coords, marker) in MARKERS.items():
        if coords.split(":", 1)[1] in known:
            continue
        prefixes = sorted({name[: -len(marker)] for name in by_name if name.endswith(marker)
                           and (len(name) == len(marker) or name[-len(marker) - 1] == "/")})
        for prefix in prefixes[:8]:
            found = VERSIONERS[lib](read, prefix)
            if not found:
                continue
            version, span, confidence, extra = found
            out.append((coords, version, {"source": "class-fingerprint", "detected_by": "class-fingerprint",
                                          "confidence": confidence, "version_range": span,
                                          "relocated_to": prefix.rstrip("/"), **extra}))
    return out

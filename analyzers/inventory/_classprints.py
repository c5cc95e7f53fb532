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
  'kPH+bIxk5D2deZiIxcaaaA==' (CVE-2016-4437, fixed in 1.2.5 by a generated key); a later copy pins no
  version and is reported as the open range '>=1.2.5'.
* spring-core and struts2-core: the newest class each release line added (STEPS below); the version
  is the range from that release to the next step's. Facts: spring-core from the `@since` tags of
  spring-framework's sources (Apache-2.0), checked against the real spring-core 4.3.30 jar of
  Debian's libspring-core-java (which the step table places in '>=4.3.0, <5.0.0'); struts2-core from
  the files of every STRUTS_2_0_0 .. STRUTS_7_3_0 tag of apache/struts (Apache-2.0). spring-beans,
  spring-webmvc and spring-webflux classes beside a fingerprinted spring-core are reported at its range
  (Spring releases its modules together), with low confidence.

Reported as maven packages with metadata `detected_by: class-fingerprint`, a `confidence` (high:
the classes pin the version; medium: a range) and `relocated_to` (the prefix, '' when not
relocated). A closed range of a single release line is reported as its newest release (log4j's
'2.1 - 2.14.1' as 2.14.1); a range the classes leave open is reported as the range itself, in the
version field (`>=1.2.5`, `>=5.3.0, <6.0.0`) with `version_exact: false` and a `version_note`: the
vulnerability matcher (analyzers/vulnerabilities/matchers.py) matches such a version conservatively,
an advisory whose affected range overlaps it being reported as "possibly affected".
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
    "spring-core": ("org.springframework:spring-core", "org/springframework/core/SpringVersion.class"),
    "struts2-core": ("org.apache.struts:struts2-core", "org/apache/struts2/StrutsConstants.class"),
}

# library -> (first release the marker speaks for, [(release, class that release added)], ascending);
# a class is one the later releases all keep, below the library's package root
STEPS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "spring-core": ("1.1.0", [  # SpringVersion exists from 1.1
        ("3.0.0", "org/springframework/core/convert/ConversionService.class"),
        ("3.1.0", "org/springframework/core/env/Environment.class"),
        ("4.0.0", "org/springframework/core/ResolvableType.class"),
        ("4.2.0", "org/springframework/core/annotation/AliasFor.class"),
        ("4.3.0", "org/springframework/core/io/ProtocolResolver.class"),
        ("5.0.0", "org/springframework/lang/Nullable.class"),
        ("5.1.0", "org/springframework/core/log/LogFormatUtils.class"),
        ("5.2.0", "org/springframework/core/annotation/MergedAnnotations.class"),
        ("5.3.0", "org/springframework/core/metrics/ApplicationStartup.class"),
        ("6.0.0", "org/springframework/aot/hint/RuntimeHints.class"),
        ("6.1.0", "org/springframework/core/task/VirtualThreadTaskExecutor.class"),
    ]),
    "struts2-core": ("2.0.0", [  # 2.0.0-2.1.2: dispatcher/FilterDispatcher only
        ("2.1.3", "org/apache/struts2/dispatcher/ng/filter/StrutsPrepareAndExecuteFilter.class"),
        ("2.5", "org/apache/struts2/dispatcher/filter/StrutsPrepareAndExecuteFilter.class"),
        ("6.0.0", "org/apache/struts2/interceptor/csp/CspInterceptor.class"),
        ("6.4.0", "org/apache/struts2/interceptor/ActionFileUploadInterceptor.class"),
        ("6.7.0", "org/apache/struts2/ActionSupport.class"),
    ]),
}
# Spring's modules are released together, at one version: a module's classes beside a fingerprinted
# spring-core (same prefix) are that module at spring-core's range (CVE-2022-22965 is filed on
# spring-beans, spring-webmvc and spring-webflux, not on spring-core)
COMPANIONS = {"spring-core": (
    ("org.springframework:spring-beans", "org/springframework/beans/BeanWrapperImpl.class"),
    ("org.springframework:spring-webmvc", "org/springframework/web/servlet/DispatcherServlet.class"),
    ("org.springframework:spring-webflux", "org/springframework/web/reactive/DispatcherHandler.class"),
)}
# struts2-core 2.5-6.x carries xwork's classes; 7.0 moved them under org/apache/struts2 (and 2.5 dropped
# the ng/ filters, which 2.1.3-2.3.x had): a later step's class without an earlier one's is that later release
_STRUTS_XWORK = "com/opensymphony/xwork2/ActionSupport.class"


Reader = Callable[[str], "bytes | None"]
Has = Callable[[str], bool]


def open_range(low: str, high: str | None = None) -> str:
    """The version text of a range the classes leave open: '>=1.2.5', '>=4.3.0, <5.0.0'. The matcher reads it."""
    return f">={low}, <{high}" if high else f">={low}"


def _ranged(low: str, high: str | None, confidence: str = "medium") -> tuple[str, str, str, dict]:
    text = open_range(low, high)
    note = f"\u2265 {low}" + (f" and < {high}" if high else "") + ", exact version unknown"
    return text, text, confidence, {"version_exact": False, "version_note": note}


def _steps(lib: str, has: Has, prefix: str) -> tuple[str, str, str, dict]:
    first, steps = STEPS[lib]
    at = 0
    for i, (_release, cls) in enumerate(steps):
        if has(prefix + cls):
            at = i + 1
    if lib == "struts2-core" and at == len(steps) and not has(prefix + _STRUTS_XWORK):
        return _ranged("7.0.0", None)
    if lib == "struts2-core" and at == len(steps):
        return _ranged("6.7.0", "7.0.0")
    low = steps[at - 1][0] if at else first
    high = steps[at][0] if at < len(steps) else None
    return _ranged(low, high)


def _log4j(read: Reader, has: Has, prefix: str) -> tuple[str, str, str, dict]:
    """(version, range, confidence, extra metadata) of a log4j-core copy."""
    root = prefix + LOG4J
    lookup = read(root + "lookup/JndiLookup.class")
    manager = read(root + "net/JndiManager.class") or b""
    jdbc = read(root + "appender/db/jdbc/DataSourceConnectionSource.class") or b""
    extra = {"jndi_lookup": "present" if lookup is not None else "absent"}
    if b"log4j2.enableJndiJdbc" in jdbc:
        # the backports 2.12.4 and 2.3.2 carry the same switches and fixes: matched as 2.17.1 or later
        version, _, confidence, ranged = _ranged("2.17.1", None)
        return version, ">=2.17.1 (or 2.12.4, 2.3.2)", confidence, {**extra, **ranged}
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


def _jackson(read: Reader, has: Has, prefix: str):
    v = _constant_version(read(prefix + "com/fasterxml/jackson/databind/cfg/PackageVersion.class"), rb"2\.\d+\.\d+.*")
    return (v, v, "high", {}) if v else None


def _fastjson(read: Reader, has: Has, prefix: str):
    v = _constant_version(read(prefix + "com/alibaba/fastjson/JSON.class"), rb"1\.[12]\.\d+.*")
    return (v, v, "high", {}) if v else None


def _collections(read: Reader, has: Has, prefix: str):
    data = read(prefix + "org/apache/commons/collections/functors/InvokerTransformer.class") or b""
    if b"enableUnsafeSerialization" in data:
        return _ranged("3.2.2", None)
    return "3.2.1", "<=3.2.1", "medium", {}


def _collections4(read: Reader, has: Has, prefix: str):
    data = read(prefix + "org/apache/commons/collections4/functors/InvokerTransformer.class") or b""
    if b"java/io/Serializable" in data:
        return "4.0", "4.0", "high", {}
    return _ranged("4.1", None)


def _shiro(read: Reader, has: Has, prefix: str):
    data = read(prefix + "org/apache/shiro/mgt/AbstractRememberMeManager.class") or b""
    if b"kPH+bIxk5D2deZiIxcaaaA==" in data:
        return "1.2.4", "<=1.2.4", "medium", {}
    return _ranged("1.2.5", None)


def _spring(read: Reader, has: Has, prefix: str):
    return _steps("spring-core", has, prefix)


def _struts(read: Reader, has: Has, prefix: str):
    return _steps("struts2-core", has, prefix)


VERSIONERS = {"log4j-core": _log4j, "jackson-databind": _jackson, "fastjson": _fastjson,
              "commons-collections": _collections, "commons-collections4": _collections4, "shiro-core": _shiro,
              "spring-core": _spring, "struts2-core": _struts}


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

    def has(name: str) -> bool:
        return name in by_name

    out = []
    for lib, (coords, marker) in MARKERS.items():
        if coords.split(":", 1)[1] in known:
            continue
        prefixes = sorted({name[: -len(marker)] for name in by_name if name.endswith(marker)
                           and (len(name) == len(marker) or name[-len(marker) - 1] == "/")})
        for prefix in prefixes[:8]:
            found = VERSIONERS[lib](read, has, prefix)
            if not found:
                continue
            version, span, confidence, extra = found
            out.append((coords, version, {"source": "class-fingerprint", "detected_by": "class-fingerprint",
                                          "confidence": confidence, "version_range": span,
                                          "relocated_to": prefix.rstrip("/"), **extra}))
            for module, cls in COMPANIONS.get(lib, ()):
                if module.split(":", 1)[1] not in known and has(prefix + cls):
                    out.append((module, version, {"source": "class-fingerprint", "detected_by": "class-fingerprint",
                                                  "confidence": "low", "version_range": span,
                                                  "relocated_to": prefix.rstrip("/"), **extra,
                                                  "version_from": coords}))
    return out

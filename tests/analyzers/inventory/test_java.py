"""Java archives: pom.properties, MANIFEST.MF, file names, nesting to any depth, bombs and cycles."""
from __future__ import annotations

import zipfile

from app_harness import inspect, manifest, pom, zip_bytes
from conftest import report_of
from imagebuilder import WHITEOUT, ImageBuilder

from stowaway.analyzers.inventory import java
from stowaway.ingest.archives import ArchiveLimits

NAMES = ("java-archive",)
DPKG_STATUS = ("Package: libfoo-java\nStatus: install ok installed\nArchitecture: all\nVersion: 1.0-1\n"
               "Maintainer: x\nDescription: foo\n\n")


def test_pom_properties_name_the_package_with_group_artifact_and_licence():
    jar = zip_bytes({"META-INF/MANIFEST.MF": manifest(Bundle_License="Apache-2.0"),
                     "META-INF/maven/com.alibaba/fastjson/pom.properties": pom("com.alibaba", "fastjson", "1.2.24"),
                     "com/alibaba/fastjson/JSON.class": b"\xca\xfe\xba\xbe"})
    got = inspect([{"opt/app/lib/fastjson-1.2.24.jar": jar}], NAMES).packages
    assert len(got) == 1
    p = got[0]
    assert (p.ecosystem, p.name, p.version, p.path, p.layer_index) == (
        "maven", "com.alibaba:fastjson", "1.2.24", "/opt/app/lib/fastjson-1.2.24.jar", 0)
    assert p.purl == "pkg:maven/com.alibaba/fastjson@1.2.24"
    assert p.licenses == ("Apache-2.0",)
    assert p.metadata["source"] == "pom.properties"


def test_manifest_only_jar_gets_the_group_of_its_well_known_artifact():
    jar = zip_bytes({"META-INF/MANIFEST.MF": manifest(Implementation_Title="spring-beans",
                                                      Implementation_Version="5.3.17"),
                     "org/springframework/beans/BeanWrapperImpl.class": b"\xca\xfe"})
    p, = inspect([{"opt/lib/spring-beans-5.3.17.jar": jar}], NAMES).packages
    assert (p.name, p.version, p.metadata["source"]) == ("org.springframework:spring-beans", "5.3.17", "MANIFEST.MF")


def test_bundle_headers_speak_when_the_file_name_has_no_version():
    jar = zip_bytes({"META-INF/MANIFEST.MF": manifest(Bundle_SymbolicName="org.acme.widgets;singleton:=true",
                                                      Bundle_Version="2.4.0")})
    p, = inspect([{"srv/widgets.jar": jar}], NAMES).packages
    assert (p.name, p.version) == ("org.acme:widgets", "2.4.0")


def test_file_name_is_the_last_resort_and_splits_at_the_version():
    assert java.split_file_name("log4j-1.2-api-2.17.1.jar") == ("log4j-1.2-api", "2.17.1")
    assert java.split_file_name("guava-31.1-jre.jar") == ("guava", "31.1-jre")
    assert java.split_file_name("app.jar") == ("app", "")
    jar = zip_bytes({"org/apache/commons/io/IOUtils.class": b"\xca\xfe"})
    p, = inspect([{"opt/lib/commons-io-2.6.jar": jar}], NAMES).packages
    assert (p.name, p.version, p.metadata["source"]) == ("commons-io:commons-io", "2.6", "file name")
    assert java.group_of("log4j-core") == "org.apache.logging.log4j"
    assert java.group_of("shiro-core") == "org.apache.shiro"
    assert java.group_of("mysql-connector-java") == "mysql"
    assert java.group_of("druid") == "com.alibaba"


def test_spring_boot_and_war_libraries_are_nested_packages_to_any_depth():
    deepest = zip_bytes({"META-INF/maven/org.yaml/snakeyaml/pom.properties": pom("org.yaml", "snakeyaml", "1.26")})
    jackson = zip_bytes({"META-INF/maven/com.fasterxml.jackson.core/jackson-databind/pom.properties":
                         pom("com.fasterxml.jackson.core", "jackson-databind", "2.9.8"),
                         "lib/snakeyaml-1.26.jar": deepest})
    collections = zip_bytes({"META-INF/MANIFEST.MF": manifest(Implementation_Version="3.2.1")})
    fat = zip_bytes({"META-INF/MANIFEST.MF": manifest(Main_Class="org.springframework.boot.loader.JarLauncher"),
                     "META-INF/maven/com.example/shop-app/pom.properties": pom("com.example", "shop-app", "1.0.0"),
                     "BOOT-INF/lib/jackson-databind-2.9.8.jar": jackson,
                     "BOOT-INF/lib/commons-collections-3.2.1.jar": collections}, zipfile.ZIP_STORED)
    war = zip_bytes({"WEB-INF/lib/shiro-core-1.2.4.jar": zip_bytes({"META-INF/MANIFEST.MF": manifest(
        Bundle_SymbolicName="org.apache.shiro.core", Bundle_Version="1.2.4")})})
    got = inspect([{"opt/shop/shop-app.jar": fat, "srv/web/ROOT.war": war}], NAMES).keyed("maven")
    outer = "/opt/shop/shop-app.jar"
    assert set(got) == {
        ("com.example:shop-app", "1.0.0", outer),
        ("com.fasterxml.jackson.core:jackson-databind", "2.9.8", f"{outer}!/BOOT-INF/lib/jackson-databind-2.9.8.jar"),
        ("org.yaml:snakeyaml", "1.26", f"{outer}!/BOOT-INF/lib/jackson-databind-2.9.8.jar!/lib/snakeyaml-1.26.jar"),
        ("commons-collections:commons-collections", "3.2.1", f"{outer}!/BOOT-INF/lib/commons-collections-3.2.1.jar"),
        ("org.apache.shiro:shiro-core", "1.2.4", "/srv/web/ROOT.war!/WEB-INF/lib/shiro-core-1.2.4.jar"),
    }
    assert all(p.layer_index == 0 for p in got.values())


def test_shaded_poms_are_packages_of_the_archive_that_bundles_them():
    jar = zip_bytes({"META-INF/maven/org.apache.httpcomponents/httpclient-osgi/pom.properties":
                     pom("org.apache.httpcomponents", "httpclient-osgi", "4.5.13"),
                     "META-INF/maven/commons-codec/commons-codec/pom.properties":
                     pom("commons-codec", "commons-codec", "1.15")})
    got = {p.name: p for p in inspect([{"usr/share/java/httpclient-osgi.jar": jar}], NAMES).packages}
    assert set(got) == {"org.apache.httpcomponents:httpclient-osgi", "commons-codec:commons-codec"}
    assert got["commons-codec:commons-codec"].metadata["shaded_in"] == "httpclient-osgi.jar"
    assert "shaded_in" not in got["org.apache.httpcomponents:httpclient-osgi"].metadata


def test_only_visible_copies_count_with_the_layer_that_wrote_them():
    old = zip_bytes({"META-INF/maven/a/b/pom.properties": pom("a", "b", "1.0")})
    new = zip_bytes({"META-INF/maven/a/b/pom.properties": pom("a", "b", "2.0")})
    layers = [{"opt/b.jar": old, "opt/gone.jar": old}, {"opt/b.jar": new}, {"opt/.wh.gone.jar": WHITEOUT}]
    got = inspect(layers, NAMES).packages
    assert [(p.version, p.path, p.layer_index) for p in got] == [("2.0", "/opt/b.jar", 1)]


def test_jars_owned_by_an_os_package_are_marked():
    jar = zip_bytes({"META-INF/maven/org.foo/foo/pom.properties": pom("org.foo", "foo", "1.0")})
    layers = [{"var/lib/dpkg/status": DPKG_STATUS,
               "var/lib/dpkg/info/libfoo-java.list": "/.\n/usr/share/java\n/usr/share/java/foo.jar\n",
               "usr/share/java/foo.jar": jar, "opt/app/foo.jar": jar}]
    got = {p.path: p for p in inspect(layers, ("dpkg",) + NAMES).packages if p.ecosystem == "maven"}
    assert got["/usr/share/java/foo.jar"].os_owned is True
    assert got["/opt/app/foo.jar"].os_owned is False


def test_zip_bomb_huge_manifest_and_junk_are_warnings_and_the_rest_stays():
    bomb = zip_bytes({"zeros.bin": b"\0" * (8 << 20)})  # ~8 KB deflated, 8 MB inflated
    good_nested = zip_bytes({"META-INF/maven/ok/inner/pom.properties": pom("ok", "inner", "1.0")})
    outer = zip_bytes({"META-INF/MANIFEST.MF": manifest(Implementation_Version="1.0"),
                       "META-INF/maven/ok/outer/pom.properties": pom("ok", "outer", "1.0"),
                       "BOOT-INF/lib/bomb.jar": b"\0" * (8 << 20),
                       "BOOT-INF/lib/inner-1.0.jar": good_nested,
                       "BOOT-INF/lib/broken.jar": b"this is not a zip archive"})
    huge = zip_bytes({"META-INF/MANIFEST.MF": "Implementation-Version: 9\r\nX: " + "a" * (2 << 20) + "\r\n"})
    layers = [{"opt/outer.jar": outer, "opt/lib/huge-manifest-3.1.jar": huge, "opt/lib/plain.jar": b"PK junk",
               "opt/zipbomb.jar": zip_bytes({"a.jar": bomb, "b.jar": b"\0" * (80 << 20)})}]
    result = inspect(layers, NAMES)
    got = {(p.name, p.path) for p in result.packages}
    assert ("ok:outer", "/opt/outer.jar") in got
    assert ("ok:inner", "/opt/outer.jar!/BOOT-INF/lib/inner-1.0.jar") in got
    # the huge manifest is skipped, so the file name speaks
    assert any(n.endswith(":huge-manifest") and path == "/opt/lib/huge-manifest-3.1.jar" for n, path in got)
    warnings = " | ".join(result.ctx.warnings)
    assert "bomb.jar: compression ratio over" in warnings
    assert "b.jar: declares 83886080 bytes" in warnings
    assert "broken.jar: not a readable zip archive" in warnings
    assert "/opt/lib/plain.jar: not a readable zip archive" in warnings
    assert "META-INF/MANIFEST.MF: 2097" in warnings and "ignored" in warnings


def test_nesting_stops_at_the_depth_limit_and_at_a_cycle():
    data = zip_bytes({"META-INF/maven/d/level/pom.properties": pom("d", "level", "9")})
    for level in range(8):
        data = zip_bytes({f"META-INF/maven/d/l{level}/pom.properties": pom("d", f"l{level}", "1"), "n.jar": data})
    result = inspect([{"opt/deep.jar": data}], NAMES)
    depths = sorted(p.path.count("!/") for p in result.packages)
    assert depths == list(range(ArchiveLimits().max_depth + 1))
    assert any("nested deeper than" in w for w in result.ctx.warnings)
    # with a policy's [archives] limit
    result = inspect([{"opt/deep.jar": data}], NAMES, policy={"archives": {"max_depth": 2}})
    assert sorted(p.path.count("!/") for p in result.packages) == [0, 1, 2]


def test_full_scan_keeps_inventory_and_reports_archive_problems(tmp_path, scan):
    good = zip_bytes({"META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties":
                      pom("org.apache.logging.log4j", "log4j-core", "2.14.1")})
    img = ImageBuilder().layer({"etc/os-release": "ID=debian\nVERSION_ID=11\n"})
    img.layer({"opt/lib/log4j-core-2.14.1.jar": good, "opt/lib/bad.jar": b"PK\x03\x04 truncated"})
    path = img.write_oci_layout(tmp_path / "oci", ref="java/test:1")
    database, outcomes = scan(f"oci:{path}", risks=["software"])
    assert outcomes[0].status == "done"
    report = report_of(database, "java/test:1")
    sw = [s for s in report["software"] if s["ecosystem"] == "maven"]
    assert [(s["name"], s["version"], s["path"], s["layer_index"], s["purl"]) for s in sw] == [
        ("org.apache.logging.log4j:log4j-core", "2.14.1", "/opt/lib/log4j-core-2.14.1.jar", 1,
         "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1")]
    assert sw[0]["vulnerability_count"] == 0
    assert any("/opt/lib/bad.jar: not a readable zip archive" in w for w in report["scan"]["warnings"])


def test_an_archive_with_too_many_entries_is_not_opened(monkeypatch):
    monkeypatch.setattr(java, "MAX_CENTRAL_DIRECTORY", 500)  # the real cap is ~200k entries
    many = zip_bytes({f"com/example/C{i}.class": b"\xca\xfe" for i in range(50)})
    few = zip_bytes({"META-INF/maven/a/few/pom.properties": pom("a", "few", "1")})
    result = inspect([{"opt/many-1.0.jar": many, "opt/few.jar": few}], NAMES)
    assert [p.name for p in result.packages] == ["a:few"]
    assert any("/opt/many-1.0.jar: central directory of" in w for w in result.ctx.warnings)


def test_damaged_members_cost_only_themselves():
    jar = bytearray(zip_bytes({"META-INF/MANIFEST.MF": manifest(Implementation_Version="7.7") + "X: " + "q" * 300,
                               "META-INF/maven/a/dmg/pom.properties": pom("a", "dmg", "1.0")}))
    info = zipfile.ZipFile(__import__("io").BytesIO(bytes(jar))).getinfo("META-INF/MANIFEST.MF")
    start = info.header_offset + 30 + len(info.filename)
    jar[start] = 0xFF  # deflate block type 3 does not exist: zlib refuses the stream
    result = inspect([{"opt/dmg-1.0.jar": bytes(jar)}], NAMES)
    assert [(p.name, p.version) for p in result.packages] == [("a:dmg", "1.0")]
    assert any("dmg-1.0.jar!/META-INF/MANIFEST.MF: unreadable (Error -3 while decompressing" in w for w in result.ctx.warnings), \
        result.ctx.warnings

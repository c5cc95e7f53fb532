"""Vendor advisory documents built in code, in each vendor's own format (shapes as Red Hat, SUSE and
openEuler publish them; see ../shared/feeds/os-advisories for real ones). The facts are public advisory
facts: RHSA-2020:5566 fixed CVE-2020-1971 (Important) in RHEL 7's openssl 1:1.0.2k-21.el7_9."""
from __future__ import annotations


def rhsa(rid: str, cves: list[str], cpe: str, platform: str, src: str, binaries: list[str], impact: str,
         modified: str = "2020-12-16T13:36:00+00:00", vector: str = "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:H") -> dict:
    """A Red Hat CSAF 2.0 advisory: `src`/`binaries` are NEVRA product ids ('openssl-1:1.0.2k-21.el7_9.src')."""
    def full(p):
        return f"{platform}:{p}"

    products = [src, *binaries]
    return {
        "document": {
            "aggregate_severity": {"namespace": "https://access.redhat.com/security/updates/classification/",
                                   "text": impact},
            "category": "csaf_security_advisory", "csaf_version": "2.0", "title": f"Red Hat Security Advisory: {rid}",
            "tracking": {"id": rid, "current_release_date": modified, "initial_release_date": modified,
                         "status": "final", "version": "1"},
        },
        "product_tree": {
            "branches": [{"category": "vendor", "name": "Red Hat", "branches": [
                {"category": "product_family", "name": "Red Hat Enterprise Linux", "branches": [
                    {"category": "product_name", "name": platform,
                     "product": {"name": platform, "product_id": platform,
                                 "product_identification_helper": {"cpe": cpe}}}]},
                {"category": "architecture", "name": "any", "branches": [
                    {"category": "product_version", "name": p, "product": {"name": p, "product_id": p}}
                    for p in products]},
            ]}],
            "relationships": [{"category": "default_component_of",
                               "full_product_name": {"name": f"{p} as a component of {platform}", "product_id": full(p)},
                               "product_reference": p, "relates_to_product_reference": platform} for p in products],
        },
        "vulnerabilities": [{
            "cve": cve, "title": f"{cve} title",
            "notes": [{"category": "description", "text": f"{cve} description"}],
            "product_status": {"fixed": [full(b) for b in binaries], "known_not_affected": [full(src)]},
            "remediations": [{"category": "vendor_fix", "details": "update", "product_ids": [full(b) for b in binaries]}],
            "scores": [{"cvss_v3": {"vectorString": vector, "version": "3.1"}, "products": [full(b) for b in binaries]}],
            "threats": [{"category": "impact", "details": impact}],
        } for cve in cves],
    }


def openeuler_cvrf(rid: str, release: str, src_file: str, cves: dict[str, str]) -> str:
    """An openEuler CVRF advisory; `cves` maps CVE -> impact ('High')."""
    cpe = f"cpe:/a:openEuler:openEuler:{release}"
    vulns = "".join(f"""
  <Vulnerability Ordinal="{i}" xmlns="http://www.icasi.org/CVRF/schema/vuln/1.1">
    <Notes><Note Title="Vulnerability Description" Type="General" Ordinal="{i}" xml:lang="en">{cve} text</Note></Notes>
    <CVE>{cve}</CVE>
    <ProductStatuses><Status Type="Fixed"><ProductID>openEuler-{release}</ProductID></Status></ProductStatuses>
    <Threats><Threat Type="Impact"><Description>{impact}</Description></Threat></Threats>
    <CVSSScoreSets><ScoreSet><BaseScore>7.5</BaseScore><Vector>AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H</Vector></ScoreSet></CVSSScoreSets>
  </Vulnerability>""" for i, (cve, impact) in enumerate(cves.items(), 1))
    binary = src_file.replace(".src.rpm", ".x86_64.rpm")
    name = src_file.rsplit("-", 2)[0]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<cvrfdoc xmlns="http://www.icasi.org/CVRF/schema/cvrf/1.1" xmlns:cvrf="http://www.icasi.org/CVRF/schema/cvrf/1.1">
  <DocumentTitle xml:lang="en">An update for {name} is now available for openEuler-{release}</DocumentTitle>
  <DocumentType>Security Advisory</DocumentType>
  <DocumentTracking><Identification><ID>{rid}</ID></Identification><Status>Final</Status><Version>1.0</Version>
    <InitialReleaseDate>2024-03-01</InitialReleaseDate><CurrentReleaseDate>2024-03-01</CurrentReleaseDate></DocumentTracking>
  <DocumentNotes><Note Title="Synopsis" Type="General" Ordinal="1" xml:lang="en">{name} security update</Note></DocumentNotes>
  <ProductTree xmlns="http://www.icasi.org/CVRF/schema/prod/1.1">
    <Branch Type="Product Name" Name="openEuler">
      <FullProductName ProductID="openEuler-{release}" CPE="{cpe}">openEuler-{release}</FullProductName>
    </Branch>
    <Branch Type="Package Arch" Name="x86_64">
      <FullProductName ProductID="{binary[:-11]}" CPE="{cpe}">{binary}</FullProductName>
    </Branch>
    <Branch Type="Package Arch" Name="src">
      <FullProductName ProductID="{src_file[:-8]}" CPE="{cpe}">{src_file}</FullProductName>
    </Branch>
  </ProductTree>{vulns}
</cvrfdoc>
"""


def suse_cvrf(rid: str, title: str, products: list[str], binaries: list[str], cve: str, impact: str) -> str:
    """A SUSE CVRF advisory: `binaries` are name-version-release product ids, placed in every product."""
    tree = "".join(f"""
    <Branch Type="Product Family" Name="{p}"><Branch Type="Product Name" Name="{p}">
      <FullProductName ProductID="{p}">{p}</FullProductName></Branch></Branch>""" for p in products)
    tree += "".join(f"""
    <Branch Type="Product Version" Name="{b}"><FullProductName ProductID="{b}">{b}</FullProductName></Branch>"""
                    for b in binaries)
    tree += "".join(f"""
    <Relationship ProductReference="{b}" RelationType="Default Component Of" RelatesToProductReference="{p}">
      <FullProductName ProductID="{p}:{b}">{b} as a component of {p}</FullProductName></Relationship>"""
                    for p in products for b in binaries)
    fixed = "".join(f"<ProductID>{p}:{b}</ProductID>" for p in products for b in binaries)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<cvrfdoc xmlns="http://www.icasi.org/CVRF/schema/cvrf/1.1" xmlns:cvrf="http://www.icasi.org/CVRF/schema/cvrf/1.1">
  <DocumentTitle xml:lang="en">{title}</DocumentTitle>
  <DocumentType>SUSE Patch</DocumentType>
  <DocumentTracking><Identification><ID>{rid}</ID></Identification><Status>Final</Status><Version>1</Version>
    <InitialReleaseDate>2023-05-01T00:00:00Z</InitialReleaseDate><CurrentReleaseDate>2023-05-01T00:00:00Z</CurrentReleaseDate>
  </DocumentTracking>
  <ProductTree xmlns="http://www.icasi.org/CVRF/schema/prod/1.1">{tree}
  </ProductTree>
  <Vulnerability Ordinal="1" xmlns="http://www.icasi.org/CVRF/schema/vuln/1.1">
    <CVE>{cve}</CVE>
    <ProductStatuses><Status Type="Fixed">{fixed}</Status></ProductStatuses>
    <Threats><Threat Type="Impact"><Description>{impact}</Description></Threat></Threats>
    <CVSSScoreSets><ScoreSet><BaseScore>7.5</BaseScore><Vector>CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H</Vector></ScoreSet></CVSSScoreSets>
  </Vulnerability>
</cvrfdoc>
"""

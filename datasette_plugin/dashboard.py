"""The dashboard page (issue 17 item 4): headline numbers, filters (registry, repository, latest only),
plots whose every bar links to the findings it counts, and the trend per image or per registry.

Filters travel as `?registry=&repository=&latest=1&trend=image|registry`; the table links they lead to
carry the same selection as a `_where` over image_overview (see queries.ImageFilter).
"""
from __future__ import annotations

import urllib.parse

from . import charts, queries
from .facets import KIND_LABELS  # noqa: F401  (the template's labels come from routes._render)


class Links:
    """The URLs a chart's bars and the headline cards point at: report tables filtered to exactly the
    rows they count (failing, unsuppressed, the dashboard's filters applied)."""

    def __init__(self, datasette, database: str, flt: queries.ImageFilter):
        self.datasette = datasette
        self.database = database
        self.where = flt.table_where()

    def table(self, view: str, **args) -> str:
        pairs = [(k, v) for k, v in args.items() if v is not None]
        if self.where and view != "image_overview":
            pairs.append(("_where", self.where))
        query = urllib.parse.urlencode(pairs)
        return self.datasette.urls.table(self.database, view) + (f"?{query}" if query else "")

    def images(self, **args) -> str:
        """image_overview rows: the dashboard's filters as the table's own columns where they can be."""
        pairs = [(k, v) for k, v in args.items() if v is not None]
        if self.where:
            pairs.append(("_where", self.where.replace("image_id IN", "id IN", 1)))
        query = urllib.parse.urlencode(pairs)
        return self.datasette.urls.table(self.database, "image_overview") + (f"?{query}" if query else "")

    def findings(self, image_id: int, severity: str) -> str:
        return self.datasette.urls.table(self.database, "findings_report") + "?" + urllib.parse.urlencode(
            {"image_id": image_id, "severity": severity, "suppressed": 0})

    def package(self, package: str, ecosystem: str | None, severity: str) -> str:
        args = {"package": package, "severity": severity, "suppressed": 0}
        if ecosystem:
            args["ecosystem"] = ecosystem
        return self.table("vulnerabilities_view", **args)

    def scan(self, scan_id: int) -> str:
        """The failing, unsuppressed findings one scan recorded (an older scan's are only in `findings`)."""
        return self.datasette.urls.table(self.database, "findings") + "?" + urllib.parse.urlencode(
            {"scan_id": scan_id, "suppressed": 0,
             "_where": "coalesce(status, 'fail') NOT IN ('pass', 'not_applicable')"})


def headline_cards(head: dict, links: Links) -> list[dict]:
    """The numbers across the top, each a link to the rows it counts."""
    return [
        {"key": "images", "label": "Images", "value": head["images"], "href": links.images()},
        {"key": "critical", "label": "Critical vulnerabilities", "value": head["critical"],
         "href": links.table("vulnerabilities_view", severity="critical", suppressed=0), "sev": "critical"},
        {"key": "fixable", "label": "Fixable vulnerabilities", "value": head["fixable"],
         "href": links.table("vulnerabilities_view", fix_available="yes", suppressed=0),
         "note": f"of {head['vulnerabilities']:,}" if head["fixable"] is not None
         else "not counted in time: narrow the filters"},
        {"key": "secrets", "label": "Secrets", "value": head["secrets"],
         "href": links.table("secrets_view", suppressed=0)},
        {"key": "malware", "label": "Malicious files", "value": head["malware"],
         "href": links.table("malware_view", suppressed=0)},
        {"key": "not_approved_base", "label": "Not on an approved base", "value": head["not_approved_base"],
         "href": links.images(base_image="not approved"),
         "note": f"{head['base_not_checked']:,} not checked" if head["base_not_checked"] else None},
    ]


async def page_context(datasette, request, name: str, db) -> dict:
    latest = request.args.get("latest") == "1"
    flt = queries.ImageFilter(request.args.get("registry"), request.args.get("repository", "").strip() or None, latest)
    trend_by = request.args.get("trend", "image")
    if trend_by not in queries.TREND_BY:
        trend_by = "image"
    data = await queries.dashboard(db, flt, trend_by)
    links = Links(datasette, name, flt)
    return {"charts": charts.dashboard(data, links), "data": data, "cards": headline_cards(data["headline"], links),
            "filters": flt, "filter_args": flt.args(), "choices": await queries.filter_choices(db),
            "trend_by": trend_by, "trend_choices": queries.TREND_BY, "no_registry": queries.NO_REGISTRY}

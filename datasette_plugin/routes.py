"""The plugin's pages under /-/stowaway/: repository images, per-image security reports, vulnerability
details, a dashboard, exports, settings, and the POST actions.

With several Stowaway databases served at once, `?db=NAME` picks one (default: the first).
"""
from __future__ import annotations

import urllib.parse

from datasette import Forbidden
from datasette.utils.asgi import AsgiStream, NotFound, Response

from stowaway.ingest.model import SEVERITIES

from . import actions, assets, config, exports, queries, report_page, schema
from .facets import KIND_LABELS


def _database(datasette, request):
    names = config.stowaway_databases(datasette)
    wanted = request.args.get("db")
    if wanted:
        if wanted not in names:
            raise NotFound(f"{wanted}: not a Stowaway database")
        return wanted, datasette.get_database(wanted)
    if not names:
        raise NotFound("no Stowaway database is being served: start with `stowaway serve DB`")
    return names[0], datasette.get_database(names[0])


def _urls(datasette, name: str, many: bool, table_names: set[str]):
    """URL helpers for templates: pages keep ?db= when several databases are served."""
    suffix = f"db={urllib.parse.quote(name)}" if many else ""

    def page(path: str, **args) -> str:
        args = {k: v for k, v in args.items() if v not in (None, "")}
        query = urllib.parse.urlencode(args)
        query = "&".join(q for q in (query, suffix) if q)
        return datasette.urls.path(f"/-/stowaway/{path}") + (f"?{query}" if query else "")

    def table(view: str, fmt: str | None = None, **args) -> str:
        """The faceted table behind a section; the core findings_view when the view is missing."""
        if view not in table_names:
            kind = {v: k for k, v in schema.VIEW_OF_KIND.items()}.get(view)
            if view == "packages_view":
                view = "packages"
            elif view == "findings_report":
                view = "findings_view"
            elif kind:
                view, args = "findings_view", {**args, "kind": kind}
        query = urllib.parse.urlencode({k: v for k, v in args.items() if v not in (None, "")})
        return datasette.urls.table(name, view, format=fmt) + (f"?{query}" if query else "")

    return {"page": page, "table": table}


async def _render(datasette, request, template, context, name, db, status=200):
    many = len(config.stowaway_databases(datasette)) > 1
    names = await queries.tables(db)
    context = {"database": name, "stowaway": _urls(datasette, name, many, names), "severities": SEVERITIES,
               "kind_labels": KIND_LABELS, "can_write": await actions.can_write(datasette, request.actor),
               "human_size": human_size, **context}
    html = await datasette.render_template(template, context, request=request)
    return Response.html(html, status=status)


def human_size(n) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# --- pages ---------------------------------------------------------------------------------------

async def index(datasette, request):
    return Response.redirect(datasette.urls.path("/-/stowaway/images"))


async def image_page(datasette, request):
    name, db = _database(datasette, request)
    ref = request.url_vars["ref"]
    image = await queries.find_image(db, ref)
    if image is None:
        raise NotFound(f"{ref}: no such image in {name}")
    # one tab per request (`?tab=vulnerabilities`), below the summary strip: see report_page.py
    tab = request.args.get("tab") or "basic"
    if tab not in report_page.TAB_KEYS:
        tab = "basic"
    summary = await report_page.summary(db, image)
    data = await report_page.tab_data(db, summary, tab, request.args)
    return await _render(datasette, request, "stowaway_image.html",
                         {"r": summary, "image": summary["image"], "tab": tab, "t": data,
                          "tab_label": report_page.LABEL[tab], "tabs": report_page.TABS}, name, db)


async def vulnerability_page(datasette, request):
    name, db = _database(datasette, request)
    vuln_id = request.url_vars["vuln_id"]
    vuln = await queries.vulnerability(db, vuln_id)
    if vuln is None:
        raise NotFound(f"{vuln_id}: no image in {name} is affected and no imported advisory has this id (import"
                       " advisories with `stowaway db import` or `stowaway db update`, then rescan or `stowaway rematch`)")  # dash
    await report_page.add_references(db, [vuln], "id", "record")
    return await _render(datasette, request, "stowaway_vulnerability.html",
                         {"v": vuln, "extra_labels": queries.EXTRA_DETAILS}, name, db)


# --- dash: dashboard and static assets (datasette_plugin/dashboard.py, assets.py) -----------------
async def dashboard_page(datasette, request):
    from . import dashboard

    name, db = _database(datasette, request)
    return await _render(datasette, request, "stowaway_dashboard.html",
                         await dashboard.page_context(datasette, request, name, db), name, db)
# --- end dash ------------------------------------------------------------------------------------


async def export(datasette, request):
    """Export vulnerabilities / baseline as CSV or XLSX (stowaway.ingest.exports, shared with `stowaway
    export`): every image, one image (?image=ID|REF), one repository, latest only, or a table's filters.
    The file is named after the image (stowaway-vulnerabilities-corpus_shop_1.0.xlsx), never its id."""
    name, db = _database(datasette, request)
    report, fmt = request.url_vars["report"], request.url_vars["fmt"]
    pairs = [(k, v) for k, v in urllib.parse.parse_qsl(request.query_string, keep_blank_values=True) if k != "db"]
    image = None
    image_arg = request.args.get("image") or (request.args.get("image_id") if len(request.args.getlist("image_id")) == 1
                                              else None)
    if image_arg:
        image = await queries.find_image(db, image_arg)
        if image is None:
            raise NotFound(f"{image_arg}: no such image in {name}")
    repository = request.args.get("repository", "").strip() or None
    registry = queries.ImageFilter(registry=request.args.get("registry")).table_where()
    latest = request.args.get("latest") == "1"
    try:
        where, params = await exports.prepare(db, report, [(k, v) for k, v in pairs if k != "image_id" or image is None],
                                              [registry] if registry else [])
    except exports.ExportError as exc:
        return Response.text(str(exc), status=400)
    named = [image["reference"]] if image else ([repository] if repository else [])
    headers = {"content-disposition": f'attachment; filename="{exports.default_file_name(report, named, fmt)}"'}
    # many images: a batch of images at a time (exports.py), never the whole export in memory
    batches = await exports.image_batches(db, image["id"] if image else None)
    if fmt == "csv":
        return AsgiStream(exports.csv_stream(db, report, where, params, batches, repository, latest),
                          headers=headers, content_type=exports.CONTENT_TYPES[fmt])
    columns, rows, more = await exports.capped_rows(db, report, where, params, batches, repository, latest)
    if more:
        note = (f"only the first {len(rows):,} rows are in this spreadsheet, the export holds more: narrow it (an"
                f" image, a repository, a table's filters) or download it as CSV, which holds every row")
        headers["x-stowaway-truncated"] = f"the first {len(rows)} rows"
        rows = rows + [(note,) + (None,) * (len(columns) - 1)]
    return Response(exports.render(report, fmt, columns, rows), content_type=exports.CONTENT_TYPES[fmt],
                    headers=headers)


async def sbom(datasette, request):
    """The image's full SBOM, as `stowaway sbom` writes it (ingest/sbom.py), for a download link."""
    from stowaway.ingest import sbom as sbom_export

    name, db = _database(datasette, request)
    image = await queries.find_image(db, request.url_vars["ref"])
    if image is None or image["last_scan_id"] is None:
        raise NotFound("no such image, or no finished scan of it")
    fmt = request.url_vars["fmt"]
    body = await db.execute_fn(lambda conn: sbom_export.export(conn, image["manifest_digest"], fmt, image["platform"]))
    ctype = "application/vnd.cyclonedx+json" if fmt == "cyclonedx" else "application/spdx+json"
    filename = f"{(image['reference'] or 'image').replace('/', '_').replace(':', '_')}.{fmt}.json"
    return Response(body, content_type=ctype, headers={"content-disposition": f'attachment; filename="{filename}"'})


async def settings_page(datasette, request):
    name, db = _database(datasette, request)
    can_write = await actions.can_write(datasette, request.actor)
    status = 200
    if request.method == "POST":
        if not can_write:
            raise Forbidden("changing Stowaway settings needs the stowaway-write permission")
        form = await request.post_vars()
        try:
            kind = form.get("kind", "")
            if form.get("action") == "remove":
                await actions.remove_setting(db, kind, form.get("value", ""))
                datasette.add_message(request, f"Removed the {actions.KINDS.get(kind, kind)}.", datasette.INFO)
            else:
                await actions.add_setting(db, kind, form.get("value", ""), request.actor)
                datasette.add_message(request, f"Added the {actions.KINDS.get(kind, kind)}.", datasette.INFO)
            return Response.redirect(_urls(datasette, name, len(config.stowaway_databases(datasette)) > 1,
                                           set())["page"]("settings"))
        except actions.ActionError as exc:
            datasette.add_message(request, str(exc), datasette.ERROR)
            status = 400
    current = await actions.settings(db, private_ok=can_write)
    return await _render(datasette, request, "stowaway_settings.html", {
        "exclusions": current["sensitive_path_exclusion"], "weak_passwords": current["weak_password"],
        "max_exclusions": actions.MAX_EXCLUSIONS, "policy_keys": actions.POLICY_KEYS,
    }, name, db, status=status)


def _back(datasette, request, form, fallback):
    target = form.get("next") or ""
    # only a path on this server: an open redirect would turn a form into a phishing link
    if not target.startswith("/") or target.startswith("//"):
        target = fallback
    return Response.redirect(target)


async def ignore_action(datasette, request):
    name, db = _database(datasette, request)
    if request.method != "POST":
        return Response.text("POST only", status=405)
    if not await actions.can_write(datasette, request.actor):
        raise Forbidden("ignoring a finding needs the stowaway-write permission")
    form = await request.post_vars()
    finding_id = int(request.url_vars["finding_id"])
    try:
        await actions.ignore_finding(db, finding_id, form.get("ignored", "1") == "1", form.get("reason", ""),
                                     request.actor, form.get("scope") or "tag")
        datasette.add_message(request, f"Finding {finding_id} " +
                              ("ignored." if form.get("ignored", "1") == "1" else "no longer ignored."), datasette.INFO)
    except actions.ActionError as exc:
        datasette.add_message(request, str(exc), datasette.ERROR)
        return Response.text(str(exc), status=400) if not form.get("next") else _back(
            datasette, request, form, datasette.urls.path("/-/stowaway/images"))
    return _back(datasette, request, form, datasette.urls.path("/-/stowaway/images"))


def menu_links(datasette):
    if not config.stowaway_databases(datasette):
        return []
    return [{"href": datasette.urls.path("/-/stowaway/images"), "label": "Stowaway: repository images"},
            {"href": datasette.urls.path("/-/stowaway/dashboard"), "label": "Stowaway: dashboard"},
            {"href": datasette.urls.path("/-/stowaway/tasks"), "label": "Stowaway: scan and sync tasks"},
            {"href": datasette.urls.path("/-/stowaway/settings"), "label": "Stowaway: scan settings"}]


EXPORTABLE = {"vulnerabilities_view": "vulnerabilities", "unsafe_settings_view": "baseline"}
# dash: the renderers' links beside the exports (every matching row, not the page's)
RENDERABLE = {"vulnerabilities_view": "sarif", "unsafe_settings_view": "sarif", "secrets_view": "sarif",
              "malware_view": "sarif", "compliance_view": "sarif", "findings_report": "sarif", "findings_view": "sarif",
              "packages_view": "cyclonedx"}


def table_actions(datasette, database, table, request):
    """'Export these rows' on the report views: the table's own filters, another path; SARIF or
    CycloneDX of every row the filters select."""
    report = EXPORTABLE.get(table)
    if not (report or table in RENDERABLE) or not config.is_stowaway(datasette, database):
        return []
    pairs = [(k, v) for k, v in urllib.parse.parse_qsl(request.query_string if request else "", keep_blank_values=True)
             if not k.startswith("_")]
    out = []
    if table in RENDERABLE:
        fmt = RENDERABLE[table]
        query = urllib.parse.urlencode(pairs)
        out.append({"href": datasette.urls.table(database, table, format=fmt) + (f"?{query}" if query else ""),
                    "label": f"Export as {'SARIF' if fmt == 'sarif' else 'CycloneDX'}"})
    if len(config.stowaway_databases(datasette)) > 1:
        pairs.append(("db", database))
    query = urllib.parse.urlencode(pairs)
    if report:
        out += [{"href": datasette.urls.path(f"/-/stowaway/export/{report}.{fmt}") + (f"?{query}" if query else ""),
                 "label": f"Export {report} ({fmt.upper()})"} for fmt in ("xlsx", "csv")]
    return out


# the image list, scans, syncs and tasks are console.ROUTES (registered before these)
ROUTES = [
    (r"^/-/stowaway/?$", index),
    (r"^/-/stowaway/image/(?P<ref>.+)/sbom\.(?P<fmt>cyclonedx|spdx)\.json$", sbom),
    (r"^/-/stowaway/image/(?P<ref>.+)$", image_page),
    (r"^/-/stowaway/finding/(?P<finding_id>\d+)/ignore$", ignore_action),
    (r"^/-/stowaway/vulnerability/(?P<vuln_id>[^/]+)$", vulnerability_page),
    (r"^/-/stowaway/dashboard$", dashboard_page),
    (r"^/-/stowaway/settings$", settings_page),
    (r"^/-/stowaway/export/(?P<report>vulnerabilities|baseline)\.(?P<fmt>csv|xlsx)$", export),
    (r"^/-/stowaway/(?P<asset>plotly\.min\.js|stowaway\.css|stowaway\.js)$", assets.asset),  # dash
]

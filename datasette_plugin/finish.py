"""Fit and finish of Datasette's own pages for a Stowaway database (issue 17 item 7):

* The report tables show human columns first and hide the internal ones (image_id, severity_rank,
  scan_id, the finding id) by default: an HTML table page without `_col`/`_nocol` is answered as if it had
  the view's `_col` list (Datasette's own column selection, so its column menu, facets, filters and sort
  links all keep working, and filters on hidden columns still apply). `?_allcols=1` shows every column;
  JSON, CSV and the renderers always get every column. The sort column is kept selected (Datasette pages
  by it); it and the rowid column of these materialized tables are hidden by the stylesheet.
* Cells link to the plugin's pages: a vulnerability id to its page, an image to its report (so every row
  of a findings table leads back to the report).
* The home page and the database page link to the plugin's pages.
"""
from __future__ import annotations

import urllib.parse

from markupsafe import Markup, escape

from . import config

# human columns first, in this order; every column not named is hidden by default
COLUMNS = {
    "vulnerabilities_view": ["image", "vulnerability_id", "severity", "cvss_score", "package", "installed_version",
                             "fixed_version", "fix_available", "ecosystem", "path", "layer_index", "layer_created_by",
                             "published", "title", "suppressed", "suppressed_reason"],
    "unsafe_settings_view": ["image", "check_id", "title", "result", "severity", "category", "target", "evidence",
                             "suggestion", "path", "layer_index", "suppressed", "suppressed_reason"],
    "secrets_view": ["image", "rule", "severity", "title", "path", "line", "masked", "source", "layer_index",
                     "layer_created_by", "visible", "suppressed", "suppressed_reason"],
    "malware_view": ["image", "rule", "severity", "title", "path", "sha256", "size", "layer_index", "layer_created_by",
                     "visible", "suppressed", "suppressed_reason"],
    "compliance_view": ["image", "name", "version", "rule", "reason", "severity", "path", "layer_index",
                        "layer_created_by", "suppressed", "suppressed_reason"],
    "findings_report": ["image", "kind", "severity", "title", "rule", "status", "package", "package_version", "path",
                        "layer_index", "layer_created_by", "visible", "suppressed", "suppressed_reason"],
    "packages_view": ["image", "name", "version", "ecosystem", "vulnerability_count", "path", "layer_index",
                      "layer_created_by", "purl", "licenses"],
    "base_image_view": ["image", "verdict", "matched", "closest", "own_layers", "severity"],
    "image_overview": ["reference", "tag", "os", "size", "last_scan", "vulnerabilities", "critical", "high",
                       "malicious_files", "packages", "unsafe_settings", "secrets", "compliance", "suppressed",
                       "base_image", "latest_version", "created", "platform"],
}
SHOW_ALL = "_allcols"
# tables whose `image` column holds an image reference (and, beside it, image_id)
IMAGE_COLUMN_TABLES = set(COLUMNS) | {"failing_findings", "check_results", "image_finding_counts", "findings_view"}


def _table_of(datasette, path: str) -> tuple[str, str] | None:
    """(database, table) of an HTML table page's path, else None."""
    base = (datasette.setting("base_url") or "/").rstrip("/")
    if base and path.startswith(base):
        path = path[len(base):]
    parts = path.strip("/").split("/")
    if len(parts) != 2 or "." in parts[1] or parts[0].startswith("-"):  # a table's HTML page only
        return None
    try:
        from datasette.utils import tilde_decode  # how Datasette names a database or table in a path
    except ImportError:
        tilde_decode = urllib.parse.unquote
    database, table = (tilde_decode(urllib.parse.unquote(p)) for p in parts)
    return database, table


def default_columns_query(datasette, path: str, query_string: str) -> str | None:
    """The query string to answer PATH with: the view's `_col` list added when the request chose no
    columns itself; None to leave the request alone."""
    found = _table_of(datasette, path)
    if not found or found[1] not in COLUMNS:
        return None
    pairs = urllib.parse.parse_qsl(query_string, keep_blank_values=True)
    if any(k in ("_col", "_nocol", SHOW_ALL) for k, _ in pairs):
        return None
    if found[0] not in config.stowaway_databases(datasette):
        return None
    columns = list(COLUMNS[found[1]])
    # Datasette pages by the sort column, so it must be selected (severity_rank, hidden by the stylesheet)
    table = config.TABLES.get(found[1], {})
    for key in ("_sort", "_sort_desc"):
        columns += [v for k, v in pairs if k == key]
    columns += [table[k] for k in ("sort", "sort_desc") if table.get(k)]
    return urllib.parse.urlencode(pairs + [("_col", c) for c in dict.fromkeys(columns)])


def asgi_wrapper(datasette):
    def wrap(app):
        async def with_columns(scope, receive, send):
            if scope.get("type") == "http" and scope.get("method") == "GET":
                query = default_columns_query(datasette, scope.get("path", ""),
                                              (scope.get("query_string") or b"").decode("latin-1"))
                if query is not None:
                    scope = {**scope, "query_string": query.encode("latin-1")}
            await app(scope, receive, send)

        return with_columns

    return wrap


def _page(datasette, database: str, path: str) -> str:
    url = datasette.urls.path(f"/-/stowaway/{path}")
    if len(config.stowaway_databases(datasette)) > 1:
        url += "?db=" + urllib.parse.quote(database)
    return url


def render_cell(datasette, database: str, table: str | None, row, column: str, value):
    """A link to the plugin's page for a vulnerability id or an image, else None."""
    if value in (None, "") or not isinstance(value, (str, int)):
        return None
    if column == "vulnerability_id" and isinstance(value, str):
        href = _page(datasette, database, "vulnerability/" + urllib.parse.quote(value, safe=""))
        return Markup(f'<a class="sw-vuln-link" href="{escape(href)}">{escape(value)}</a>')
    ref = None
    if column == "image" and table in IMAGE_COLUMN_TABLES:
        ref = _row_get(row, "image_id") or value
    elif column == "reference" and table in ("image_overview", "images"):
        ref = _row_get(row, "id") or value
    if ref is None:
        return None
    href = _page(datasette, database, "image/" + urllib.parse.quote(str(ref), safe="/:@"))
    return Markup(f'<a class="sw-image-link" href="{escape(href)}" title="security report">{escape(value)}</a>')


def _row_get(row, key):
    try:
        return row[key]
    except (KeyError, IndexError, TypeError):
        return None


LINKS = [("images", "Repository images", "every image with its counts per risk item"),
         ("dashboard", "Dashboard", "headline numbers, the worst images, trends"),
         ("settings", "Scan settings", "sensitive-path exclusions and weak passwords")]


def home_links_html(datasette) -> str:
    """The block the home page shows above the databases (1.0's top_homepage, 0.65's body script)."""
    if not config.stowaway_databases(datasette):
        return ""
    items = "".join(f'<li><a href="{escape(datasette.urls.path("/-/stowaway/" + path))}">{escape(label)}</a>'
                    f' <span class="sw-muted">{escape(note)}</span></li>' for path, label, note in LINKS)
    return f'<section class="sw-home" id="stowaway-home"><h2>Stowaway</h2><ul>{items}</ul></section>'


def home_script(datasette, template) -> str | None:
    """0.65 has no top_homepage hook: the home page gets the same block from a script."""
    if template != "index.html":
        return None
    block = home_links_html(datasette)
    if not block:
        return None
    import json

    return ("(function () { var h = document.querySelector('section.content h1') || document.querySelector('h1');"
            " if (!h || document.getElementById('stowaway-home')) { return; }"
            f" h.insertAdjacentHTML('afterend', {json.dumps(block)}); }})();")


def database_actions(datasette, database: str):
    if not config.is_stowaway(datasette, database):
        return []
    return [{"href": _page(datasette, database, path), "label": f"Stowaway: {label.lower()}"}
            for path, label, _ in LINKS]

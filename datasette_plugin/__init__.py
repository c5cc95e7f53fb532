"""Stowaway's Datasette plugin: hook implementations only, each delegating to its module.

Found through the `datasette` entry point, so `datasette stowaway.db` and `stowaway serve
stowaway.db` both load it; nothing here depends on the serve command.
"""
from __future__ import annotations

from datasette import hookimpl

from . import actions, assets, compat, config, console, facets, finish, freshness, private, renderers, routes


@hookimpl
def get_metadata(datasette, key, database, table):
    return config.metadata(datasette)


@hookimpl
def startup(datasette):
    async def migrate_databases():
        await compat.apply_table_defaults(datasette)
        for name in config.stowaway_databases(datasette):
            await freshness.migrate(datasette, name)

    return migrate_databases


@hookimpl
def asgi_wrapper(datasette):
    checked, columns = freshness.asgi_wrapper(datasette), finish.asgi_wrapper(datasette)  # finish: dash
    return lambda app: checked(columns(app))


@hookimpl
def register_facet_classes():
    return facets.FACET_CLASSES


@hookimpl
def register_routes(datasette):
    return console.ROUTES + routes.ROUTES


@hookimpl
def register_output_renderer(datasette):
    return renderers.OUTPUT_RENDERERS


@hookimpl
def render_cell(row, value, column, table, database, datasette):
    if not config.is_stowaway(datasette, database):
        return None
    rendered = renderers.render_cell(value, column)
    return rendered if rendered is not None else finish.render_cell(datasette, database, table, row, column, value)


@hookimpl
def permission_allowed(datasette, actor, action, resource):
    refused = private.permission_allowed(datasette, actor, action, resource)
    return refused if refused is not None else actions.permission_allowed(datasette, actor, action)


@hookimpl
def prepare_connection(conn):
    private.prepare_connection(conn)


@hookimpl
def register_actions(datasette):  # Datasette 1.0
    return compat.registered_actions()


@hookimpl
def permission_resources_sql(datasette, actor, action):  # Datasette 1.0
    return compat.permission_sql(datasette, actor, action)


# --- dash: assets served gzipped with an ETag (assets.py); the URL changes with the content ---------
@hookimpl
def extra_css_urls(datasette):
    return [datasette.urls.path(f"/-/stowaway/stowaway.css?v={assets.version('stowaway.css')}")]


@hookimpl
def extra_js_urls(datasette):
    return [{"url": datasette.urls.path(f"/-/stowaway/stowaway.js?v={assets.version('stowaway.js')}"), "module": False}]


@hookimpl
def extra_body_script(template, datasette):
    return finish.home_script(datasette, template)


@hookimpl
def top_homepage(datasette, request):  # Datasette 1.0
    return finish.home_links_html(datasette)


@hookimpl
def database_actions(datasette, actor, database, request):
    return finish.database_actions(datasette, database)
# --- end dash ------------------------------------------------------------------------------------


@hookimpl
def menu_links(datasette, actor, request):
    return routes.menu_links(datasette)


@hookimpl
def table_actions(datasette, actor, database, table, request):
    return routes.table_actions(datasette, database, table, request)

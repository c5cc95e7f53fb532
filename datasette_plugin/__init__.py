"""Stowaway's Datasette plugin: hook implementations only, each delegating to its module.

Found through the `datasette` entry point, so `datasette stowaway.db` and `stowaway serve
stowaway.db` both load it; nothing here depends on the serve command.
"""
from __future__ import annotations

from datasette import hookimpl

from . import actions, compat, config, facets, freshness, private, renderers, routes


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
    return freshness.asgi_wrapper(datasette)


@hookimpl
def register_facet_classes():
    return facets.FACET_CLASSES


@hookimpl
def register_routes(datasette):
    return routes.ROUTES


@hookimpl
def register_output_renderer(datasette):
    return renderers.OUTPUT_RENDERERS


@hookimpl
def render_cell(value, column, database, datasette):
    return renderers.render_cell(value, column) if config.is_stowaway(datasette, database) else None


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


@hookimpl
def extra_css_urls(datasette):
    return [datasette.urls.static_plugins("stowaway", "stowaway.css")]


@hookimpl
def menu_links(datasette, actor, request):
    return routes.menu_links(datasette)


@hookimpl
def table_actions(datasette, actor, database, table, request):
    return routes.table_actions(datasette, database, table, request)

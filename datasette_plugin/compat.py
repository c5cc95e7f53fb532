"""What differs on the Datasette 1.0 alphas (checked against 1.0a41), so the other modules need not care.

* Permissions: 1.0 drops `permission_allowed` (hook and method) for registered actions
  (`register_actions`), SQL permission rules (`permission_resources_sql`) and `datasette.allowed()`.
* Configuration: 1.0 drops the `get_metadata` hook; table options (facets, sort, hidden, label
  column) live in the instance config (datasette.yaml) and titles/descriptions in its metadata
  tables. The plugin's defaults are written under whatever the user configured, at startup.
* Facets: the constructor's `metadata=` became `table_config=`; the facets never touch it
  (they only implement suggest() and facet_results() and read configs through get_configs()).
"""
from __future__ import annotations

from datasette.utils import actor_matches_allow

from . import config

METADATA_KEYS = ("title", "description")


def registered_actions() -> list:
    try:
        from datasette.permissions import Action
    except ImportError:  # 0.65: actions need no registration
        return []
    return [Action(name=config.WRITE_PERMISSION,
                   description="Scan images again, edit Stowaway's scan settings, ignore findings")]


def allowed(datasette, actor) -> bool:
    return bool(actor) and actor_matches_allow(actor, config.plugin_config(datasette)["write"])


def permission_sql(datasette, actor, action):
    if action != config.WRITE_PERMISSION or not allowed(datasette, actor):
        return None
    from datasette.permissions import PermissionSQL

    return PermissionSQL.allow(reason="matches plugins.stowaway.write")


async def can_write(datasette, actor) -> bool:
    if hasattr(datasette, "allowed"):  # 1.0
        return await datasette.allowed(action=config.WRITE_PERMISSION, actor=actor)
    return await datasette.permission_allowed(actor, config.WRITE_PERMISSION, default=False)


async def apply_table_defaults(datasette) -> None:
    """1.0 only: the defaults get_metadata supplies on 0.65, under the user's own configuration."""
    if not hasattr(datasette, "set_resource_metadata"):
        return
    if datasette.config is None:
        datasette.config = {}
    for name in config.stowaway_databases(datasette):
        tables = datasette.config.setdefault("databases", {}).setdefault(name, {}).setdefault("tables", {})
        for table, defaults in config.TABLES.items():
            own = tables.setdefault(table, {})
            for key, value in defaults.items():
                if key in METADATA_KEYS:
                    await datasette.set_resource_metadata(name, table, key, value)
                elif key != "columns":
                    own.setdefault(key, value)

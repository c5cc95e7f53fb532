"""Private settings stay private on every page, table, JSON and CSV endpoint and in custom SQL.

The custom weak passwords are the `value` of the `weak_password` rows of the settings table. Datasette
reads through shared connections whatever the actor, so a table permission alone would leave custom
SQL (`/DB?sql=select * from stowaway_settings`) open: every connection Datasette opens gets a SQLite
authorizer that reads that column as NULL (SQLITE_IGNORE), and the settings page reads it with the
authorizer lifted for one statement, for writers only. On top, actors without the `stowaway-write`
permission may not view the settings table nor download a Stowaway database file.

The scans' policy column never holds the words (ingest.writer records only how many there were).
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager

from stowaway.ingest.policy import SETTINGS_TABLE

from . import compat, config

PRIVATE_COLUMNS = {(SETTINGS_TABLE, "value")}
# tables that would hand out raw pages of the file, whatever the authorizer says about columns
RAW_TABLES = {"sqlite_dbpage"}


def authorizer(action, arg1, arg2, dbname, source):
    if action == sqlite3.SQLITE_READ and arg1 is not None:
        table = arg1.lower()
        if table in RAW_TABLES:
            return sqlite3.SQLITE_DENY
        if (table, (arg2 or "").lower()) in PRIVATE_COLUMNS:
            return sqlite3.SQLITE_IGNORE
    return sqlite3.SQLITE_OK


def prepare_connection(conn) -> None:
    conn.set_authorizer(authorizer)


@contextmanager
def lifted(conn):
    """The authorizer lifted for the plugin's own statements (callers check the permission first, or
    select only what anyone may read)."""
    conn.set_authorizer(None)
    try:
        yield conn
    finally:
        conn.set_authorizer(authorizer)


def read_private(conn, sql: str, params=()) -> list:
    with lifted(conn):
        return conn.execute(sql, params).fetchall()


def permission_allowed(datasette, actor, action, resource):
    """False for the settings table and the database download unless the actor may write."""
    if action == "view-table" and isinstance(resource, (tuple, list)) and len(resource) == 2:
        if resource[1] == SETTINGS_TABLE and config.is_stowaway(datasette, resource[0]):
            return None if compat.allowed(datasette, actor) else False
    if action == "view-database-download" and isinstance(resource, str) and config.is_stowaway(datasette, resource):
        return None if compat.allowed(datasette, actor) else False
    return None

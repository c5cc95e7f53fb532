"""Actions that write: sensitive-path exclusions, custom weak passwords, ignoring a finding.

Each needs the `stowaway-write` permission (granted through Datasette's permission_allowed hook to
the actors matching the plugin's `write` allow block, the root actor by default); Datasette's CSRF
protection guards every POST. The exclusions and weak passwords live in the plugin's settings table,
and `policy_overrides()` turns them into the policy fragment a scan reads.
"""
from __future__ import annotations

import sqlite3

from stowaway.ingest import db as dbm
from stowaway.ingest.policy import SETTINGS_POLICY_KEYS as POLICY_KEYS  # noqa: F401 (routes read POLICY_KEYS)
from stowaway.ingest.policy import add_lists, database_settings

from . import compat, config, private, schema

MAX_EXCLUSIONS = 20
MAX_REASON = 500
KINDS = {"sensitive_path_exclusion": "sensitive-path exclusion", "weak_password": "weak password"}
# Where each setting lands in the scan policy (the secrets and weak-password analyzers read these).


class ActionError(ValueError):
    """A refused action: its message is shown to the user, with a 400."""


async def _write(db, fn):
    try:
        return await db.execute_write_fn(fn, block=True)
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):  # a scan holds the write lock for its whole transaction
            raise ActionError("the database is busy (a scan is writing to it): try again in a moment") from None
        raise


def permission_allowed(datasette, actor, action):
    if action != config.WRITE_PERMISSION:
        return None
    return True if compat.allowed(datasette, actor) else None


async def can_write(datasette, actor) -> bool:
    return await compat.can_write(datasette, actor)


# --- settings ------------------------------------------------------------------------------------

async def settings(db, private_ok: bool = False) -> dict[str, list[str]]:
    """The settings; the weak passwords only with `private_ok` (the caller checked the permission)."""
    out: dict[str, list[str]] = {k: [] for k in KINDS}
    sql = f"SELECT kind, value FROM {schema.SETTINGS_TABLE}"
    if not private_ok:  # anyone may read the exclusions
        sql += " WHERE kind = 'sensitive_path_exclusion'"
    rows = await db.execute_fn(lambda conn: private.read_private(conn, sql + " ORDER BY id"))
    for r in rows:
        if r[1] is not None:
            out.setdefault(r[0], []).append(r[1])
    return out


def validate(kind: str, value: str) -> str:
    if kind not in KINDS:
        raise ActionError(f"unknown setting {kind!r}")
    value = (value or "").strip()
    if not value or len(value) > 300 or any(c in value for c in "\r\n\0"):
        raise ActionError(f"a {KINDS[kind]} must be one line of 1 to 300 characters")
    if kind == "sensitive_path_exclusion" and not value.startswith("/"):
        raise ActionError("a sensitive-path exclusion is an absolute path or glob inside the image, like /usr/share/doc")
    return value


async def add_setting(db, kind: str, value: str, actor) -> None:
    value = validate(kind, value)

    def write(conn):
        with private.lifted(conn):
            add(conn)

    def add(conn):
        if kind == "sensitive_path_exclusion":
            count = conn.execute(f"SELECT COUNT(*) FROM {schema.SETTINGS_TABLE} WHERE kind = ?", [kind]).fetchone()[0]
            exists = conn.execute(f"SELECT 1 FROM {schema.SETTINGS_TABLE} WHERE kind = ? AND value = ?",
                                  [kind, value]).fetchone()
            if count >= MAX_EXCLUSIONS and not exists:
                raise ActionError(f"at most {MAX_EXCLUSIONS} sensitive-path exclusions; remove one first")
        with conn:
            conn.execute(f"INSERT OR IGNORE INTO {schema.SETTINGS_TABLE} (kind, value, created_at, actor)"
                         " VALUES (?, ?, ?, ?)", [kind, value, dbm.now(), (actor or {}).get("id")])

    await _write(db, write)


async def remove_setting(db, kind: str, value: str) -> None:
    def write(conn):
        with private.lifted(conn), conn:
            conn.execute(f"DELETE FROM {schema.SETTINGS_TABLE} WHERE kind = ? AND value = ?", [kind, value])

    await _write(db, write)


def policy_overrides(conn) -> dict:
    """The policy fragment the settings table stands for (lists to add with `with_overrides`)."""
    return database_settings(conn)


def with_overrides(policy: dict, overrides: dict) -> dict:
    """The policy with the settings' lists added to its own (ingest.policy.merge would replace them)."""
    return add_lists(policy, overrides)


# --- findings ------------------------------------------------------------------------------------

async def ignore_finding(db, finding_id: int, ignored: bool, reason: str, actor=None, scope: str = "tag") -> None:
    """Ignoring a finding makes a suppression in the findings store (its id, package and path, scoped to
    the image's tag, its repository or every image), so it holds through rescans and rematches;
    un-ignoring removes the suppressions that cover it."""
    reason = (reason or "").strip()
    if ignored and not reason:
        raise ActionError("say why the finding is ignored")
    if len(reason) > MAX_REASON:
        raise ActionError(f"a reason is at most {MAX_REASON} characters")
    if scope not in ("tag", "repository", "everywhere"):
        raise ActionError("scope is one of tag, repository, everywhere")

    def write(conn):
        from stowaway.ingest import findings as store

        try:
            suppression = store.suppression_for_finding(conn, finding_id, scope)
        except LookupError:
            raise ActionError(f"no finding {finding_id}") from None
        with conn:
            if ignored:
                suppression.reason = reason
                suppression.author = (actor or {}).get("id")
                suppression.source = "datasette"
                store.add_suppression(conn, suppression)
            else:
                store.remove_suppressions(conn, store.covering(conn, finding_id))

    await _write(db, write)

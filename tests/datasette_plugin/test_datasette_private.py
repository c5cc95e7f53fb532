"""Private settings never reach an actor without the stowaway-write permission: every table and view
(HTML, JSON, CSV and the plugin's renderers), every row of the settings and scans tables, custom SQL,
the database download and every plugin page and export are requested anonymously, and none holds a
custom weak password or a registry credential."""
from __future__ import annotations

import asyncio
import html
import io
import json
import sqlite3
import urllib.parse
import zipfile

from plugin_fixtures import ROOT, datasette_for, db_name, demo_db, post_form, task_of, wait_for_task  # noqa: F401 (demo_db is a fixture)

from stowaway.ingest import db as dbm

UI_PASSWORD = "Ui-Weak-Pw-4471!"  # added on the settings page
FILE_PASSWORD = "File-Weak-Pw-9203!"  # [passwords] extra of the operator's policy file
REGISTRY_PASSWORD = "Registry-Secret-5518"  # [registries."HOST"] password of the policy file
SECRETS = (UI_PASSWORD, FILE_PASSWORD, REGISTRY_PASSWORD)


def run(coro):
    return asyncio.run(coro)


def text_of(response) -> str:
    body = response.content
    if body[:2] == b"PK":  # XLSX: the words would be in the sheet's XML
        with zipfile.ZipFile(io.BytesIO(body)) as z:
            return "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
    return body.decode("utf-8", "replace")


def with_private_settings(path, tmp_path):
    """The settings page and a scan again as root leave the words in the settings table and (before
    the fix) in the scans' policy record."""
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[passwords]\nextra = ["{FILE_PASSWORD}"]\n'
                      f'[registries."registry.example:5000"]\nusername = "ci"\npassword = "{REGISTRY_PASSWORD}"\n'
                      # nothing listens there: the console's sync of it fails, and says so without the password
                      f'[registries."127.0.0.1:9"]\nusername = "ci"\npassword = "{REGISTRY_PASSWORD}"\n'
                      'scheme = "http"\nretries = 0\ntimeout = 5\n')
    ds = datasette_for(path, metadata={"plugins": {"stowaway": {"policy_file": str(policy)}}})
    page = "/-/stowaway/settings"
    assert run(post_form(ds, page, page, {"kind": "weak_password", "value": UI_PASSWORD}, actor=ROOT)).status_code == 302
    assert run(post_form(ds, page, page, {"kind": "sensitive_path_exclusion", "value": "/srv/private-but-not-secret"},
                         actor=ROOT)).status_code == 302
    with sqlite3.connect(path) as conn:
        image_id = conn.execute("SELECT id FROM images WHERE reference = 'demo/app:1.0'").fetchone()[0]
    task_id = task_of(run(post_form(ds, f"/-/stowaway/image/{image_id}", f"/-/stowaway/image/{image_id}/rescan", {},
                                    actor=ROOT)))
    assert wait_for_task(path, task_id) == "done"
    # a registry sync from the image list, as a background task that fails (connection refused)
    sync = task_of(run(post_form(ds, "/-/stowaway/images", "/-/stowaway/sync", {"registry": "127.0.0.1:9"},
                                 actor=ROOT)))
    assert wait_for_task(path, sync) == "failed"
    return ds


def anonymous_urls(path) -> list[str]:
    name = db_name(path)
    with sqlite3.connect(path) as conn:
        relations = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
                                                " AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        image_ids = [r[0] for r in conn.execute("SELECT id FROM images")]
        scan_ids = [r[0] for r in conn.execute("SELECT id FROM scans")]
        setting_ids = [r[0] for r in conn.execute("SELECT id FROM stowaway_settings")]
        vulns = [r[0] for r in conn.execute("SELECT DISTINCT vulnerability_id FROM vulnerability_details")]
        task_ids = [r[0] for r in conn.execute("SELECT id FROM tasks")]
    assert {"rescan", "sync"} <= {k for (k,) in sqlite3.connect(path).execute("SELECT kind FROM tasks")}
    assert "stowaway_settings" in relations and "scans" in relations and len(relations) > 20
    urls = ["/", f"/{name}", f"/{name}.json", f"/{name}.db", "/-/metadata.json", "/-/plugins.json",
            "/-/settings.json", "/-/databases.json"]
    for rel in relations:
        base = f"/{name}/{urllib.parse.quote(rel)}"
        urls += [base, f"{base}.json?_size=max", f"{base}.json?_shape=array&_size=max", f"{base}.csv?_size=max",
                 f"{base}.csv?_stream=on", f"{base}.sarif", f"{base}.cyclonedx"]
    urls += [f"/{name}/scans/{i}" for i in scan_ids] + [f"/{name}/scans/{i}.json" for i in scan_ids]
    urls += [f"/{name}/stowaway_settings/{i}" for i in setting_ids]
    urls += [f"/{name}/stowaway_settings/{i}.json" for i in setting_ids]
    for sql in ("select * from stowaway_settings", "select group_concat(value, ' ') from stowaway_settings",
                "select policy from scans", "select * from sqlite_dbpage"):
        q = urllib.parse.urlencode({"sql": sql})
        urls += [f"/{name}?{q}", f"/{name}.json?{q}", f"/{name}.csv?{q}"]
    urls += ["/-/stowaway/", "/-/stowaway/images", "/-/stowaway/images.json", "/-/stowaway/dashboard",
             "/-/stowaway/settings", "/-/stowaway/plotly.min.js"]
    for i in image_ids:
        urls += [f"/-/stowaway/image/{i}", f"/-/stowaway/image/{i}/sbom.cyclonedx.json",
                 f"/-/stowaway/image/{i}/sbom.spdx.json", f"/-/stowaway/image/{i}/rescan"]
        urls += [f"/-/stowaway/export/{r}.{f}?image={i}" for r in ("vulnerabilities", "baseline") for f in ("csv", "xlsx")]
    urls += [f"/-/stowaway/export/{r}.{f}" for r in ("vulnerabilities", "baseline") for f in ("csv", "xlsx")]
    urls += [f"/-/stowaway/vulnerability/{v}" for v in vulns]
    # the console's task pages and their JSON, and its POST-only actions asked with a GET
    urls += ["/-/stowaway/tasks", "/-/stowaway/tasks.json", "/-/stowaway/scan", "/-/stowaway/sync"]
    urls += [f"/-/stowaway/task/{i}" for i in task_ids] + [f"/-/stowaway/task/{i}.json" for i in task_ids]
    urls += [f"/-/stowaway/images?{f}" for f in ("registry=", "base=not+approved", "repository=demo/app")]
    urls += ["/-/stowaway/images.json?_facets=1"]
    return urls


def test_no_private_setting_reaches_an_anonymous_actor(demo_db, tmp_path):
    ds = with_private_settings(demo_db, tmp_path)
    # the words are really there, so the checks below can fail
    with sqlite3.connect(demo_db) as conn:
        stored = {r[0] for r in conn.execute("SELECT value FROM stowaway_settings")}
    assert UI_PASSWORD in stored
    root = {"ds_actor": ds.sign({"a": ROOT}, "actor")}
    assert UI_PASSWORD in run(ds.client.get("/-/stowaway/settings", cookies=root)).text

    answered = 0
    for url in anonymous_urls(demo_db):
        got = run(ds.client.get(url))
        assert got.status_code < 500, (url, got.status_code, got.text[:300])
        body = text_of(got)
        for word in SECRETS:
            assert word not in body, f"{word} shown anonymously at {url}"
        answered += got.status_code == 200
    assert answered > 100
    # the failed sync says why in one sentence, on its page, to anyone; never with the credentials
    with sqlite3.connect(demo_db) as conn:
        sync = conn.execute("SELECT id FROM tasks WHERE kind = 'sync'").fetchone()[0]
    task = run(ds.client.get(f"/-/stowaway/task/{sync}.json")).json()
    assert task["state"] == "failed" and task["error"] and "\n" not in task["error"], task
    assert task["error"].startswith("127.0.0.1:9") and "connection failed" in task["error"], task["error"]
    assert html.escape(task["error"]) in run(ds.client.get(f"/-/stowaway/task/{sync}")).text
    # what anyone may read is still there: the exclusions, the scans' policy record, the table's rows for root
    assert "/srv/private-but-not-secret" in run(ds.client.get("/-/stowaway/settings")).text
    scans = run(ds.client.get(f"/{db_name(demo_db)}/scans.json?_shape=array&_sort_desc=id")).json()
    assert scans[0]["policy"] and json.loads(scans[0]["policy"])["passwords"]["extra_count"] == 2
    assert "username" in json.loads(scans[0]["policy"])["registries"]["registry.example:5000"]
    assert run(ds.client.get(f"/{db_name(demo_db)}/stowaway_settings")).status_code == 403
    assert run(ds.client.get(f"/{db_name(demo_db)}/stowaway_settings", cookies=root)).status_code == 200


def test_an_immutable_database_is_not_downloadable_anonymously(demo_db):
    from datasette.app import Datasette

    ds = Datasette(immutables=[demo_db])
    name = db_name(demo_db)
    assert run(ds.client.get(f"/{name}.db")).status_code == 403
    root = {"ds_actor": ds.sign({"a": ROOT}, "actor")}
    assert run(ds.client.get(f"/{name}.db", cookies=root)).status_code == 200


def test_settings_still_change_and_reach_the_scan(demo_db):
    ds = datasette_for(demo_db)
    page = "/-/stowaway/settings"
    assert run(post_form(ds, page, page, {"kind": "weak_password", "value": UI_PASSWORD}, actor=ROOT)).status_code == 302
    assert run(post_form(ds, page, page, {"kind": "weak_password", "value": UI_PASSWORD, "action": "remove"},
                         actor=ROOT)).status_code == 302
    with sqlite3.connect(demo_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM stowaway_settings WHERE kind = 'weak_password'").fetchone() == (0,)


def test_older_scans_lose_their_recorded_weak_passwords(demo_db):
    with sqlite3.connect(demo_db) as conn:
        conn.execute("UPDATE scans SET policy = ?", [json.dumps({"passwords": {"extra": [UI_PASSWORD, "x"],
                                                                               "budget_seconds": 5}})])
        conn.execute("DELETE FROM schema_parts WHERE name = 'scan_policy_redaction'")
    database = dbm.connect(demo_db)
    database.conn.close()
    with sqlite3.connect(demo_db) as conn:
        policies = [json.loads(r[0]) for r in conn.execute("SELECT policy FROM scans")]
    assert policies and all(p == {"passwords": {"extra_count": 2, "budget_seconds": 5}} for p in policies)

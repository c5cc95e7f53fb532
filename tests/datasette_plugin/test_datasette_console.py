"""The console's workflow: the image list's filters, operation column and Scan form; scans, "Scan
again" and registry syncs run as background tasks (another process) with a Manage Task page."""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3

from plugin_fixtures import ROOT, datasette_for, demo_db, post_form, task_of, wait_for_task  # noqa: F401 (demo_db is a fixture)

from stowaway.datasette_plugin import console
from stowaway.ingest.model import RISK_TYPES


def run(coro):
    return asyncio.run(coro)


def one(path, sql, params=()):
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchone()


def ids_of(path, *refs):
    with sqlite3.connect(path) as conn:
        return [conn.execute("SELECT id FROM images WHERE reference = ?", [r]).fetchone()[0] for r in refs]


def root_cookies(ds):
    return {"ds_actor": ds.sign({"a": ROOT}, "actor")}


def add_registry_image(path, reference="registry.example:5000/team/api:1"):
    """An image of a registry host beside the demo's local ones (a copy of demo/app:2.0's row)."""
    from stowaway.ingest import readmodel

    with sqlite3.connect(path) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(images)") if r[1] != "id"]
        conn.execute(f"INSERT INTO images ({', '.join(cols)}) SELECT "
                     + ", ".join("?" if c in ("reference", "repository", "tag") else c for c in cols)
                     + " FROM images WHERE reference = 'demo/app:2.0'",
                     [reference if c == "reference" else reference.rsplit(":", 1)[0] if c == "repository" else "1"
                      for c in cols if c in ("reference", "repository", "tag")])
        new = conn.execute("SELECT id FROM images WHERE reference = ?", [reference]).fetchone()[0]
        readmodel.refresh_images(conn, [new])
    return new


# --- the image list ------------------------------------------------------------------------------

def test_filters_and_facets_by_registry_repository_os_and_base(demo_db):
    new = add_registry_image(demo_db)
    ds = datasette_for(demo_db)
    got = run(ds.client.get("/-/stowaway/images.json?_facets=1")).json()
    facets = {name: {f["value"]: f["count"] for f in values} for name, values in got["facets"].items()}
    assert facets["registry"] == {"registry.example:5000": 1, "": 3}
    assert facets["repository"] == {"demo/app": 2, "other/tool": 1, "registry.example:5000/team/api": 1}
    assert facets["base"] == {"not approved": 1, "unknown": 3}  # demo/app:1.0 has the base-image finding
    assert set(facets["os"]) >= {"Debian GNU/Linux 11 (bullseye)"} and len(facets["os"]) == 2

    def refs(query):
        body = run(ds.client.get(f"/-/stowaway/images.json?{query}")).json()
        return sorted(i["reference"] for i in body["images"]), body["total"]

    assert refs("registry=registry.example:5000") == (["registry.example:5000/team/api:1"], 1)
    assert refs("registry=") == (["demo/app:1.0", "demo/app:2.0", "other/tool:1"], 3)  # no registry host
    assert refs("repository=demo/app") == (["demo/app:1.0", "demo/app:2.0"], 2)
    assert refs("base=not+approved") == (["demo/app:1.0"], 1)
    assert refs("base=unknown&repository=demo/app") == (["demo/app:2.0"], 1)
    alpine = next(v for v in facets["os"] if "Debian" not in v)
    assert refs(f"os={alpine}") == (["other/tool:1"], 1)
    # a facet counts under the other filters, not its own
    narrowed = run(ds.client.get("/-/stowaway/images.json?_facets=1&repository=demo/app")).json()["facets"]
    assert {f["value"]: f["count"] for f in narrowed["repository"]}["other/tool"] == 1
    assert {f["value"]: f["count"] for f in narrowed["base"]} == {"not approved": 1, "unknown": 1}

    page = run(ds.client.get("/-/stowaway/images?repository=demo/app&base=not+approved")).text
    assert page.count('class="sw-image-row"') == 1 and f'data-image-id="{new}"' not in page
    assert 'href="/-/stowaway/images?repository=demo%2Fapp"' in page  # removes the base filter only
    # the repository facet still offers the other repositories (it counts under the other filters only)
    page = run(ds.client.get("/-/stowaway/images?repository=demo/app")).text
    assert 'href="/-/stowaway/images?repository=registry.example%3A5000%2Fteam%2Fapi"' in page


def test_operation_column_and_scan_form_for_writers_only(demo_db):
    ds = datasette_for(demo_db)
    anonymous = run(ds.client.get("/-/stowaway/images")).text
    assert anonymous.count("View report") == 3
    assert 'name="csrftoken"' not in anonymous and 'action="/-/stowaway/scan"' not in anonymous
    assert "Synchronize the latest assets" not in anonymous
    root = run(ds.client.get("/-/stowaway/images", cookies=root_cookies(ds))).text
    assert root.count('class="sw-tick"') == 3 and root.count('form="sw-scan" name="image"') == 3
    assert root.count('class="sw-row-scan"') == 3  # one Scan per row
    assert all(f'name="risk" value="{r}" checked' in root for r in RISK_TYPES)
    assert 'name="concurrency"' in root and 'name="images_per_hour"' in root


# --- scans from the console ---------------------------------------------------------------------

def test_scan_from_the_list_runs_as_a_background_task(demo_db):
    ds = datasette_for(demo_db)
    a, b, other = ids_of(demo_db, "demo/app:1.0", "demo/app:2.0", "other/tool:1")
    before = {i: one(demo_db, "SELECT last_scan_id FROM images WHERE id = ?", [i])[0] for i in (a, b, other)}
    form = {"image": [str(a), str(b)], "risk": ["software", "files"], "concurrency": "2", "images_per_hour": "500"}
    tasks = one(demo_db, "SELECT COUNT(*) FROM tasks")[0]  # the fixture's own scan was one
    refused = run(post_form(ds, "/-/stowaway/images", "/-/stowaway/scan", form, actor=None))
    assert refused.status_code == 403
    assert one(demo_db, "SELECT COUNT(*) FROM tasks")[0] == tasks

    task_id = task_of(run(post_form(ds, "/-/stowaway/images", "/-/stowaway/scan", form, actor=ROOT)))
    row = one(demo_db, "SELECT kind, risk_types, concurrency, images_per_hour, total FROM tasks WHERE id = ?",
              [task_id])
    assert row == ("manual", json.dumps(["files", "software"]), 2, 500, 2)
    assert wait_for_task(demo_db, task_id) == "done"
    pid = one(demo_db, "SELECT pid FROM tasks WHERE id = ?", [task_id])[0]
    assert pid and pid != os.getpid()  # it ran in a process of its own, not in the request

    after = {i: one(demo_db, "SELECT last_scan_id FROM images WHERE id = ?", [i])[0] for i in (a, b, other)}
    assert after[a] > before[a] and after[b] > before[b] and after[other] == before[other]
    for i in (a, b):
        status, risks, task = one(demo_db, "SELECT status, risk_types, task_id FROM scans WHERE id = ?", [after[i]])
        assert (status, json.loads(risks), task) == ("done", ["files", "software"], task_id)

    body = run(ds.client.get(f"/-/stowaway/task/{task_id}.json")).json()
    assert (body["state"], body["done"], body["failed"], body["total"], body["finished"]) == ("done", 2, 0, 2, True)
    scans = [s for item in body["items"] for s in item["scans"]]
    assert sorted(s["reference"] for s in scans) == ["demo/app:1.0", "demo/app:2.0"]
    assert all(s["status"] == "done" for s in scans)
    # counts of the risk types the scan ran only (software's packages), not a clean 0 for the others
    assert all([c["risk"] for c in s["counts"]] == ["software"] and s["counts"][0]["n"] > 0 for s in scans)
    page = run(ds.client.get(f"/-/stowaway/task/{task_id}")).text
    assert "demo/app:1.0" in page and "demo/app:2.0" in page and "File information, Software" in page
    assert "sw-task-done" in page and "fetch(" not in page  # finished: no more polling
    assert " packages" in page and "vulnerabilities," not in page and "only File information, Software checked" in page
    assert f'href="/-/stowaway/task/{task_id}"' in run(ds.client.get("/-/stowaway/tasks")).text
    listing = run(ds.client.get("/-/stowaway/images")).text
    assert listing.count("sw-state-done") == 3
    # the columns of the risk types this scan did not run say "not checked", never a clean 0
    rows = {i: listing.split(f'data-image-id="{i}"')[1].split("</tr>")[0] for i in (a, b, other)}
    assert rows[a].count("sw-not-run") == rows[b].count("sw-not-run") == 6 and "sw-not-run" not in rows[other]
    assert ">not checked<" in rows[a] and "sw-sev-critical" not in rows[a]
    assert set(console.RISK_LABELS) == set(RISK_TYPES)


def test_scan_parameters_are_checked(demo_db):
    ds = datasette_for(demo_db)
    a = ids_of(demo_db, "demo/app:1.0")[0]
    tasks = one(demo_db, "SELECT COUNT(*) FROM tasks")[0]
    bad = [({"risk": ["files"]}, "tick at least one image"),
           ({"image": [str(a)], "risk": ["everything"]}, "unknown risk type"),
           ({"image": [str(a)], "concurrency": "99"}, "concurrent tasks is a number from 1 to 8"),
           ({"image": [str(a)], "images_per_hour": "-3"}, "images per hour is a whole number")]
    for form, sentence in bad:
        got = run(post_form(ds, "/-/stowaway/images", "/-/stowaway/scan", {**form, "next": "/-/stowaway/images"},
                            actor=ROOT))
        assert got.status_code == 302 and got.headers["location"] == "/-/stowaway/images"
        page = run(ds.client.get("/-/stowaway/images", cookies={**got.cookies, **root_cookies(ds)})).text
        assert sentence in page, sentence
    assert one(demo_db, "SELECT COUNT(*) FROM tasks")[0] == tasks


def test_scan_again_redirects_to_its_task_and_a_relative_source_resolves(demo_db, tmp_path):
    """The recorded source is relative to the database's directory (as when `stowaway scan oci:oci...`
    ran there); the server runs elsewhere. Scan again finds it and records it absolute."""
    ds = datasette_for(demo_db)
    image_id, before, source = one(demo_db, "SELECT id, last_scan_id, source FROM images"
                                            " WHERE reference = 'demo/app:1.0'")
    assert source == f"oci:{tmp_path / 'oci'}"  # a new scan records its source absolute
    with sqlite3.connect(demo_db) as conn:
        conn.execute("UPDATE images SET source = 'oci:oci' WHERE id = ?", [image_id])
    assert os.getcwd() != str(tmp_path) and not os.path.exists("oci")

    task_id = task_of(run(post_form(ds, f"/-/stowaway/image/{image_id}", f"/-/stowaway/image/{image_id}/rescan",
                                    {}, actor=ROOT)))
    assert one(demo_db, "SELECT kind, total FROM tasks WHERE id = ?", [task_id]) == ("rescan", 1)
    assert one(demo_db, "SELECT source FROM task_items WHERE task_id = ?", [task_id]) == \
        (f"oci:{tmp_path / 'oci'}:demo/app:1.0",)
    assert wait_for_task(demo_db, task_id) == "done"
    after, status, recorded = one(demo_db, "SELECT s.id, s.status, i.source FROM images i JOIN scans s"
                                           " ON s.id = i.last_scan_id WHERE i.id = ?", [image_id])
    assert after > before and status == "done" and recorded == f"oci:{tmp_path / 'oci'}:demo/app:1.0"


def test_a_failing_image_is_one_sentence_on_the_task_page(demo_db, tmp_path):
    ds = datasette_for(demo_db)
    a, b = ids_of(demo_db, "demo/app:1.0", "other/tool:1")
    with sqlite3.connect(demo_db) as conn:
        conn.execute("UPDATE images SET source = ? WHERE id = ?", [f"oci:{tmp_path / 'gone'}", a])
    task_id = task_of(run(post_form(ds, "/-/stowaway/images", "/-/stowaway/scan",
                                    {"image": [str(a), str(b)], "risk": ["files"]}, actor=ROOT)))
    assert wait_for_task(demo_db, task_id) == "done"  # one image failed; the other was scanned
    body = run(ds.client.get(f"/-/stowaway/task/{task_id}.json")).json()
    assert (body["done"], body["failed"]) == (1, 1)
    failed = next(i for i in body["items"] if i["state"] == "failed")
    assert "no such file or directory" in failed["error"] and "\n" not in failed["error"]
    page = run(ds.client.get(f"/-/stowaway/task/{task_id}")).text
    assert "no such file or directory" in page and "Traceback" not in page and "internal error" not in page
    images = run(ds.client.get("/-/stowaway/images")).text
    assert "sw-state-failed" in images and "no such file or directory" in images


def test_a_task_page_of_a_running_task_polls_its_json(demo_db):
    from stowaway.ingest import db as dbm
    from stowaway.ingest.tasks import create_task

    database = dbm.connect(demo_db)
    task_id = create_task(database, ["oci:/nowhere"], "manual")
    database.conn.close()
    ds = datasette_for(demo_db)
    page = run(ds.client.get(f"/-/stowaway/task/{task_id}")).text
    assert f'"/-/stowaway/task/{task_id}.json"' in page and "setInterval" in page
    body = run(ds.client.get(f"/-/stowaway/task/{task_id}.json")).json()
    assert (body["state"], body["finished"], body["total"]) == ("queued", False, 1)
    assert run(ds.client.get("/-/stowaway/task/999999")).status_code == 404
    assert run(ds.client.get("/-/stowaway/task/999999.json")).status_code == 404


def test_synchronize_the_latest_assets_of_a_registry_of_the_policy(demo_db, tmp_path):
    """A registry the policy file configures is offered to writers; the sync runs as a task that lists
    what it found, and the synced images are in the registry tables."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ingest"))
    from registry_server import Misbehaving
    from test_console_tasks import registry_with_catalog

    server = Misbehaving()
    try:
        registry_with_catalog(server, {"team/api": ["1", "2"], "team/web": ["1"]})
        policy = tmp_path / "policy.toml"
        policy.write_text(f'[registries."{server.host}"]\nscheme = "http"\nretries = 0\n')
        ds = datasette_for(demo_db, metadata={"plugins": {"stowaway": {"policy_file": str(policy)}}})
        assert "Synchronize the latest assets" not in run(ds.client.get("/-/stowaway/images")).text
        page = run(ds.client.get("/-/stowaway/images", cookies=root_cookies(ds))).text
        assert "Synchronize the latest assets" in page and f"<option>{server.host}</option>" in page
        refused = run(post_form(ds, "/-/stowaway/images", "/-/stowaway/sync", {"registry": "elsewhere:5000"},
                                actor=ROOT))
        assert refused.status_code == 302 and "/-/stowaway/task/" not in refused.headers["location"]
        assert run(post_form(ds, "/-/stowaway/images", "/-/stowaway/sync", {"registry": server.host},
                             actor=None)).status_code == 403

        task_id = task_of(run(post_form(ds, "/-/stowaway/images", "/-/stowaway/sync", {"registry": server.host},
                                        actor=ROOT)))
        assert wait_for_task(demo_db, task_id, timeout=120) == "done"
    finally:
        server.stop()
    body = run(ds.client.get(f"/-/stowaway/task/{task_id}.json")).json()
    assert (body["kind"], body["done"], body["total"]) == ("sync", 2, 2)
    assert body["items"][0]["summary"]["tags"] == 3 and body["items"][0]["summary"]["added"] == 3
    page = run(ds.client.get(f"/-/stowaway/task/{task_id}")).text
    assert f"Task {task_id}: synchronize {server.host}" in page and "3 tags: 3 new" in page
    assert one(demo_db, "SELECT COUNT(*) FROM registry_images WHERE host = ?", [server.host]) == (3,)


def test_a_task_whose_process_is_gone_says_so_and_stops_polling(demo_db):
    import socket
    import subprocess

    from stowaway.ingest import db as dbm
    from stowaway.ingest.tasks import create_task

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs
    database = dbm.connect(demo_db)
    task_id = create_task(database, ["oci:/nowhere"], "manual")
    with database.conn:
        database.conn.execute("UPDATE tasks SET state='running', pid=?, host=? WHERE id=?",
                              [gone.pid, socket.gethostname(), task_id])
    database.conn.close()
    ds = datasette_for(demo_db)
    body = run(ds.client.get(f"/-/stowaway/task/{task_id}.json")).json()
    assert body["finished"] is True and f"pid {gone.pid}" in body["stopped"] and "pid" not in body
    page = run(ds.client.get(f"/-/stowaway/task/{task_id}")).text
    assert "sw-task-stopped" in page and "setInterval" not in page
    assert one(demo_db, "SELECT state FROM tasks WHERE id = ?", [task_id]) == ("running",)  # a GET writes nothing


def test_cancel_a_task_from_its_page(demo_db):
    """Writers get a Cancel button while a task has not finished: a task nobody runs ends cancelled at
    once; a running one says it is cancelling (its runner stops starting images). Others get no button
    and a 403."""
    import socket

    from stowaway.ingest import db as dbm
    from stowaway.ingest.tasks import create_task

    database = dbm.connect(demo_db)
    queued = create_task(database, ["oci:/nowhere:a", "oci:/nowhere:b"], "manual")
    running = create_task(database, ["oci:/nowhere:c"], "manual")
    with database.conn:  # run by a live process (this one)
        database.conn.execute("UPDATE tasks SET state='running', pid=?, host=? WHERE id=?",
                              [os.getpid(), socket.gethostname(), running])
    database.conn.close()
    ds = datasette_for(demo_db)
    page = f"/-/stowaway/task/{queued}"
    assert "Cancel task" not in run(ds.client.get(page)).text
    assert "Cancel task" in run(ds.client.get(page, cookies=root_cookies(ds))).text
    assert run(post_form(ds, page, page + "/cancel", {}, actor=None)).status_code == 403
    assert one(demo_db, "SELECT state FROM tasks WHERE id = ?", [queued]) == ("queued",)

    done = run(post_form(ds, page, page + "/cancel", {}, actor=ROOT))
    assert done.status_code == 302 and done.headers["location"] == page
    assert one(demo_db, "SELECT state FROM tasks WHERE id = ?", [queued]) == ("cancelled",)
    body = run(ds.client.get(page + ".json")).json()
    assert body["finished"] is True and [i["state"] for i in body["items"]] == ["cancelled", "cancelled"]
    shown = run(ds.client.get(page, cookies=root_cookies(ds))).text
    assert "sw-task-cancelled" in shown and "Cancel task" not in shown and "setInterval" not in shown
    again = run(post_form(ds, page, page + "/cancel", {}, actor=ROOT))  # said on the page, not a 500
    assert again.status_code == 302 and one(demo_db, "SELECT state FROM tasks WHERE id = ?", [queued]) == ("cancelled",)

    page = f"/-/stowaway/task/{running}"
    assert run(post_form(ds, page, page + "/cancel", {}, actor=ROOT)).status_code == 302
    assert one(demo_db, "SELECT state, cancel_requested > 0 FROM tasks WHERE id = ?", [running]) == ("running", 1)
    shown = run(ds.client.get(page, cookies=root_cookies(ds))).text
    assert "sw-task-cancelling" in shown and "Cancel task" not in shown and "setInterval" in shown

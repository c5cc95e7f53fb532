"""Actions that write: refused without the stowaway-write permission or the CSRF token, done with them."""
from __future__ import annotations

import asyncio
import json
import sqlite3

from plugin_fixtures import ROOT, datasette_for, demo_db, post_form, task_of, wait_for_task  # noqa: F401 (demo_db is a fixture)

from stowaway.datasette_plugin import actions


def run(coro):
    return asyncio.run(coro)


def one(path, sql, params=()):
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchone()


def finding_id(path, vuln="CVE-2022-0001"):
    return one(path, "SELECT finding_id FROM vulnerability_details WHERE vulnerability_id = ?", [vuln])[0]


def test_ignore_needs_the_permission_and_the_token(demo_db):
    ds = datasette_for(demo_db)
    fid = finding_id(demo_db)
    page, action = "/-/stowaway/image/demo/app:1.0", f"/-/stowaway/finding/{fid}/ignore"
    form = {"ignored": "1", "reason": "not reachable in our deployment", "next": "/-/stowaway/image/2"}

    no_token = run(post_form(ds, page, action, form, actor=ROOT, with_token=False))
    assert no_token.status_code == 403  # Datasette's CSRF protection, whatever the actor
    anonymous = run(post_form(ds, page, action, form, actor=None))
    assert anonymous.status_code == 403  # a valid token, but no permission
    assert one(demo_db, "SELECT ignored, ignore_reason FROM findings WHERE id = ?", [fid]) == (0, None)

    done = run(post_form(ds, page, action, form, actor=ROOT))
    assert done.status_code == 302 and done.headers["location"] == "/-/stowaway/image/2"
    assert one(demo_db, "SELECT ignored, ignore_reason FROM findings WHERE id = ?", [fid]) == \
        (1, "not reachable in our deployment")
    # an ignored finding leaves the counts and is marked in the report
    images = run(ds.client.get("/-/stowaway/images")).text
    assert "sw-sev-high" not in images.split('class="sw-image-row"')[1]

    back = run(post_form(ds, page, action, {"ignored": "0", "next": "//evil.example/"}, actor=ROOT))
    assert back.status_code == 302 and back.headers["location"] == "/-/stowaway/images"  # no open redirect
    assert one(demo_db, "SELECT ignored, ignore_reason FROM findings WHERE id = ?", [fid]) == (0, None)

    no_reason = run(post_form(ds, page, action, {"ignored": "1"}, actor=ROOT))
    assert no_reason.status_code == 400


def test_anonymous_pages_are_read_only(demo_db):
    ds = datasette_for(demo_db)
    anonymous = run(ds.client.get("/-/stowaway/image/2")).text
    assert "Scan again" not in anonymous and 'name="csrftoken"' not in anonymous
    cookies = {"ds_actor": ds.sign({"a": ROOT}, "actor")}
    root = run(ds.client.get("/-/stowaway/image/2", cookies=cookies)).text
    assert "Scan again" in root
    # one compact suppress control per finding, on its tab
    vulns = run(ds.client.get("/-/stowaway/image/2?tab=vulnerabilities", cookies=cookies)).text
    assert vulns.count("/ignore") == 8 and vulns.count('class="sw-suppress"') == 8
    anonymous_vulns = run(ds.client.get("/-/stowaway/image/2?tab=vulnerabilities")).text
    assert "/ignore" not in anonymous_vulns and 'name="csrftoken"' not in anonymous_vulns


def test_write_allow_block_is_configurable(demo_db):
    ds = datasette_for(demo_db, metadata={"plugins": {"stowaway": {"write": {"id": "alice"}}}})
    fid = finding_id(demo_db)
    action = f"/-/stowaway/finding/{fid}/ignore"
    form = {"ignored": "1", "reason": "accepted risk"}
    # the token comes from a page rendered for root, who may read but no longer write
    got = run(post_form(ds, "/-/stowaway/dashboard", action, form, actor=ROOT, with_token=False))
    assert got.status_code == 403
    cookies = {"ds_actor": ds.sign({"a": {"id": "alice"}}, "actor")}
    page = run(ds.client.get("/-/stowaway/image/2", cookies=cookies))
    token = page.cookies.get("ds_csrftoken") or ""
    token_cookie = {"ds_csrftoken": token} if token else {}
    assert "Scan again" in page.text
    refused = run(ds.client.post(action, data={**form, "csrftoken": token},
                                 cookies={**token_cookie, "ds_actor": ds.sign({"a": ROOT}, "actor")}))
    assert refused.status_code == 403
    done = run(ds.client.post(action, data={**form, "csrftoken": token}, cookies={**cookies, **token_cookie}))
    assert done.status_code in (200, 302)
    assert one(demo_db, "SELECT ignored FROM findings WHERE id = ?", [fid]) == (1,)


def test_sensitive_path_exclusions_stop_at_twenty(demo_db):
    ds = datasette_for(demo_db)
    page = "/-/stowaway/settings"
    refused = run(post_form(ds, page, page, {"kind": "sensitive_path_exclusion", "value": "/srv/x"}, actor=None))
    assert refused.status_code == 403
    for i in range(20):
        got = run(post_form(ds, page, page, {"kind": "sensitive_path_exclusion", "value": f"/srv/fixtures{i}/*"},
                            actor=ROOT))
        assert got.status_code == 302, got.text[:300]
    again = run(post_form(ds, page, page, {"kind": "sensitive_path_exclusion", "value": "/srv/fixtures3/*"}, actor=ROOT))
    assert again.status_code == 302  # already there: not a 21st
    twenty_first = run(post_form(ds, page, page, {"kind": "sensitive_path_exclusion", "value": "/srv/one-too-many"},
                                 actor=ROOT))
    assert twenty_first.status_code == 400 and "at most 20" in twenty_first.text
    relative = run(post_form(ds, page, page, {"kind": "sensitive_path_exclusion", "value": "srv/x"}, actor=ROOT))
    assert relative.status_code == 400
    assert one(demo_db, "SELECT COUNT(*) FROM stowaway_settings WHERE kind = 'sensitive_path_exclusion'") == (20,)
    removed = run(post_form(ds, page, page, {"action": "remove", "kind": "sensitive_path_exclusion",
                                             "value": "/srv/fixtures0/*"}, actor=ROOT))
    assert removed.status_code == 302
    assert run(post_form(ds, page, page, {"kind": "sensitive_path_exclusion", "value": "/srv/one-more"},
                         actor=ROOT)).status_code == 302


def test_weak_passwords_reach_the_scan_policy(demo_db):
    ds = datasette_for(demo_db)
    page = "/-/stowaway/settings"
    for value in ("Acme2024!", "winter-is-coming"):
        assert run(post_form(ds, page, page, {"kind": "weak_password", "value": value}, actor=ROOT)).status_code == 302
    assert run(post_form(ds, page, page, {"kind": "sensitive_path_exclusion", "value": "/opt/app/.env"},
                         actor=ROOT)).status_code == 302
    anonymous = run(ds.client.get(page)).text
    assert "Acme2024!" not in anonymous and "/opt/app/.env" in anonymous
    with sqlite3.connect(demo_db) as conn:
        overrides = actions.policy_overrides(conn)
    assert overrides == {"passwords": {"extra": ["Acme2024!", "winter-is-coming"]},
                         "secrets": {"exclude_paths": ["/opt/app/.env"]}}
    merged = actions.with_overrides({"secrets": {"exclude_paths": ["/srv/a"]}, "limits": {}}, overrides)
    assert merged["secrets"]["exclude_paths"] == ["/srv/a", "/opt/app/.env"]


def test_scan_again_runs_the_pipeline_with_the_settings(demo_db):
    ds = datasette_for(demo_db)
    page = "/-/stowaway/settings"
    assert run(post_form(ds, page, page, {"kind": "sensitive_path_exclusion", "value": "/opt/app/*"},
                         actor=ROOT)).status_code == 302
    image_id, before = one(demo_db, "SELECT id, last_scan_id FROM images WHERE reference = 'demo/app:1.0'")
    scans = one(demo_db, "SELECT COUNT(*) FROM scans")[0]
    action = f"/-/stowaway/image/{image_id}/rescan"
    assert run(post_form(ds, f"/-/stowaway/image/{image_id}", action, {}, actor=None)).status_code == 403
    assert one(demo_db, "SELECT last_scan_id FROM images WHERE id = ?", [image_id]) == (before,)
    # the request answers at once with the task's page; the scan runs in a process of its own
    task_id = task_of(run(post_form(ds, f"/-/stowaway/image/{image_id}", action, {}, actor=ROOT)))
    assert wait_for_task(demo_db, task_id) == "done"
    after, source, status, policy = one(
        demo_db, "SELECT s.id, s.source, s.status, s.policy FROM images i JOIN scans s ON s.id = i.last_scan_id"
                 " WHERE i.id = ?", [image_id])
    assert after > before and status == "done"
    assert source.endswith(":demo/app:1.0")  # only this image of the layout was scanned again
    assert "/opt/app/*" in json.loads(policy)["secrets"]["exclude_paths"]
    assert one(demo_db, "SELECT COUNT(*) FROM scans") == (scans + 1,)
    assert one(demo_db, "SELECT t.kind, t.state, i.source FROM tasks t JOIN task_items i ON i.task_id = t.id"
                        " ORDER BY t.id DESC LIMIT 1") == ("rescan", "done", source)
    # the report now shows the new scan, which holds only what the installed analyzers found
    report = run(ds.client.get(f"/-/stowaway/image/{image_id}")).text
    assert f"Scan {after}:" in report


def test_scan_again_uses_the_configured_policy_file(demo_db, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text('[secrets]\nexclude_paths = ["/srv/from-the-file/*"]\n')
    ds = datasette_for(demo_db, metadata={"plugins": {"stowaway": {"policy_file": str(policy)}}})
    image_id = one(demo_db, "SELECT id FROM images WHERE reference = 'demo/app:1.0'")[0]
    task_id = task_of(run(post_form(ds, f"/-/stowaway/image/{image_id}", f"/-/stowaway/image/{image_id}/rescan", {},
                                    actor=ROOT)))
    assert wait_for_task(demo_db, task_id) == "done"
    recorded = json.loads(one(demo_db, "SELECT s.policy FROM images i JOIN scans s ON s.id = i.last_scan_id"
                                       " WHERE i.id = ?", [image_id])[0])
    assert recorded["secrets"]["exclude_paths"] == ["/srv/from-the-file/*"]
    policy.unlink()
    missing = run(post_form(ds, f"/-/stowaway/image/{image_id}", f"/-/stowaway/image/{image_id}/rescan", {},
                            actor=ROOT))
    assert missing.status_code == 302  # back to the report, with the reason as a message
    page = run(ds.client.get(missing.headers["location"], cookies=missing.cookies)).text
    assert "cannot scan again" in page and "policy.toml" in page


def test_a_write_during_a_scan_gets_a_clear_refusal(demo_db):
    ds = datasette_for(demo_db)
    fid = finding_id(demo_db)
    run(ds.client.get("/-/stowaway/images"))  # refresh the report tables first: that is a write too
    scan = sqlite3.connect(demo_db, isolation_level=None)
    scan.execute("BEGIN IMMEDIATE")  # as a scan's transaction holds the write lock
    try:
        got = run(post_form(ds, "/-/stowaway/image/2", f"/-/stowaway/finding/{fid}/ignore",
                            {"ignored": "1", "reason": "accepted"}, actor=ROOT))
    finally:
        scan.execute("ROLLBACK")
        scan.close()
    assert got.status_code == 400 and "database is busy" in got.text
    assert one(demo_db, "SELECT ignored FROM findings WHERE id = ?", [fid]) == (0,)

"""The image list as every surface shows it (`stowaway images`, `/-/stowaway/images.json`, the
notebooks): the read model's image_overview row of each image, plus its counts per kind and severity."""
from __future__ import annotations

from . import readmodel


def image_list(conn, where: str = "", params=None, order: str = "reference, id", limit: int | None = None,
               offset: int = 0) -> list[dict]:
    """One dict per image: image_overview's columns (the image list page's), `manifest_digest`,
    `counts` ({"failing": {kind: {severity: n}}, "suppressed": {...}}) and the totals `failing` and
    `suppressed` (failing findings of every kind, unsuppressed and suppressed)."""
    sql = (f"SELECT o.*, i.manifest_digest FROM image_overview o JOIN images i ON i.id = o.id"
           f"{' WHERE ' + where if where else ''} ORDER BY {order}")
    if limit is not None:
        sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
    cur = conn.execute(sql, params or [])
    cols = [c[0] for c in cur.description]
    items = [dict(zip(cols, r)) for r in cur.fetchall()]
    # a page: the counts of its images only (all of them: 1,000,000 findings grouped for 100 rows)
    counts = readmodel.counts(conn, image_ids=[item["id"] for item in items] if limit is not None else None)
    for item in items:
        c = counts.get(item["id"], {"failing": {}, "suppressed": {}})
        item["counts"] = c
        item["failing"] = sum(n for sev in c["failing"].values() for n in sev.values())
        item["suppressed"] = sum(n for sev in c["suppressed"].values() for n in sev.values())
    return items

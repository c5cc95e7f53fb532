"""Approved base images: diff_id prefix matching, the closest known base, and the guessed boundary."""
import json
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from conftest import CORPUS, corpus, report_of
from imagebuilder import File, ImageBuilder

from stowaway.analyzers.base import ImageContext
from stowaway.analyzers.base_image import BaseImage, guess_boundary
from stowaway.ingest.model import ImageSpec, LayerDescriptor


def nop(cmd):
    return {"created_by": f"/bin/sh -c #(nop)  {cmd}", "empty_layer": True}


def step(cmd):
    return {"created_by": f"/bin/sh -c {cmd}"}


def kit(cmd, empty=False):
    return {"created_by": cmd, "comment": "buildkit.dockerfile.v0", **({"empty_layer": True} if empty else {})}


# --- the boundary from the history --------------------------------------------------------------

def test_boundary_is_the_base_cmd_that_a_build_step_follows():
    shop = [step("#(nop) ADD file:abc in /"), nop('CMD ["bash"]'), nop("ENV A=1"), step("apt-get install nmap"),
            step("#(nop) COPY dir:x in /opt"), nop("EXPOSE 22"), nop('CMD ["/start.sh"]')]
    assert guess_boundary(shop, 3) == 1


def test_boundary_with_buildkit_and_a_base_of_a_base():
    history = [step("#(nop) ADD file:abc in /"), nop('CMD ["bash"]'),  # debian
               kit("RUN apt-get install python3"), kit("ENTRYPOINT [\"python3\"]", empty=True),  # python base
               kit("COPY app /app"), kit("RUN pip install -r req.txt"), kit('CMD ["app.py"]', empty=True)]
    assert guess_boundary(history, 4) == 2  # the nearest base: debian + python's layer


@pytest.mark.parametrize("history,layers", [
    ([step("#(nop) ADD file:abc in /"), nop('CMD ["bash"]')], 1),  # a base image itself: nothing follows its CMD
    ([step("ADD rootfs"), step("RUN make")], 2),  # no CMD at all
    ([step("#(nop) ADD file:abc in /"), nop('CMD ["bash"]'), step("RUN x")], 5),  # history disagrees with layers
    ([nop('CMD ["bash"]'), step("RUN x")], 1),  # a CMD below every layer bounds nothing
    ("not a list", 1),
])
def test_no_boundary_when_the_history_cannot_tell(history, layers):
    assert guess_boundary(history, layers) is None


def test_evaluator_on_a_hand_made_context_without_a_database():
    spec = ImageSpec("x/app:1", "test", "sha256:m", "sha256:c",
                     {"history": [step("ADD /"), nop('CMD ["sh"]'), step("RUN a"), step("RUN b")]},
                     [LayerDescriptor(i, "", f"sha256:{i}") for i in range(3)])
    ctx = ImageContext(spec=spec, fs=None, policy={})
    [f] = BaseImage({}).collect(ctx, [])
    assert (f.kind, f.status, f.detail["approved"], f.detail["guessed_boundary"], f.detail["own_layers"]) == \
        ("base_image", "not_applicable", None, 1, 2)
    ctx = ImageContext(spec=spec, fs=None, policy={"base_images": {"approved": ["x/base:1"]}})
    [f] = BaseImage({}).collect(ctx, [])
    assert f.detail["approved"] == 0 and f.status == "fail"
    assert any("x/base:1 is not in the database" in w for w in ctx.warnings)
    # an approved REF naming the image itself needs no database
    ctx = ImageContext(spec=spec, fs=None, policy={"base_images": {"approved": ["x/app:1"]}})
    [f] = BaseImage({}).collect(ctx, [])
    assert (f.detail["approved"], f.detail["own_layers"]) == (1, 0)


# --- through the pipeline ------------------------------------------------------------------------

@dataclass
class HistoryBuilder(ImageBuilder):
    """An ImageBuilder whose history is given whole (empty CMD entries between layers)."""

    history: list = field(default_factory=list)

    def config(self, diff_ids=None):
        config = super().config(diff_ids)
        if self.history:
            config["history"] = self.history
        return config


def base_image(tag="1"):
    img = HistoryBuilder(history=[step("#(nop) ADD file:root in /"), step("#(nop) ADD file:more in /usr"),
                                  nop('CMD ["sh"]')])
    img.layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n", "bin/sh": File(b"\x7fELF", mode=0o755)})
    img.layer({"usr/share/base.txt": f"base {tag}"})
    return img


def derived(base, *contents):
    img = HistoryBuilder(layers=list(base.layers), created_by=list(base.created_by),
                         history=list(base.history) + [nop("ENV X=1")])
    for i, c in enumerate(contents):
        img.layer({f"app/file{i}": c})
        img.history.append(step(f"#(nop) COPY file{i} /app"))
    img.history.append(nop('CMD ["/app/run"]'))
    return img


def test_approved_when_a_base_chain_is_a_prefix(tmp_path, scan):
    base = base_image()
    base.write_oci_layout(tmp_path / "base", ref="corp/base:1")
    derived(base, "a", "b").write_oci_layout(tmp_path / "app", ref="corp/app:1")
    scan(f"oci:{tmp_path / 'base'}")
    database, outcomes = scan(f"oci:{tmp_path / 'app'}", policy={"base_images": {"approved": ["corp/base:1"]}},
                              risks=["base_image"])
    assert outcomes[0].status == "done" and not outcomes[0].warnings
    got = report_of(database, "corp/app:1")["base_image"]
    assert got["matched_digest"].startswith("sha256:") and got["base_layers"] == 2
    assert _core(got) == {"approved": True, "matched": "corp/base:1", "own_layers": 2, "closest": "corp/base:1",
                          "guessed_boundary": 2}


def test_not_approved_names_the_closest_known_base(tmp_path, scan):
    base = base_image()
    base.write_oci_layout(tmp_path / "oci", ref="corp/base:1")
    other = base_image("2")  # same first layer, a different second one
    other.write_oci_layout(tmp_path / "oci", ref="corp/base:2", append=True)
    derived(base, "a").write_oci_layout(tmp_path / "oci", ref="corp/app:1", append=True)
    unrelated = ImageBuilder().layer({"bin/busybox": File(b"\x7fELF bb", mode=0o755)})
    unrelated.write_oci_layout(tmp_path / "oci", ref="corp/tools:1", append=True)
    derived(other, "z").write_oci_layout(tmp_path / "oci", ref="corp/app:2", append=True)
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", policy={"base_images": {"approved": ["corp/base:1"]}},
                              risks=["base_image"])
    assert [o.status for o in outcomes] == ["done"] * 5
    app2 = report_of(database, "corp/app:2")["base_image"]
    assert (app2["approved"], app2["matched"], app2["closest"], app2["guessed_boundary"]) == (False, None, "corp/base:2", 2)
    # base:2 shares one layer with the approved base:1 (and app:1, derived from base:1, is not its base)
    base2 = report_of(database, "corp/base:2")["base_image"]
    assert (base2["approved"], base2["closest"]) == (False, "corp/base:1")
    row = database.execute("SELECT d.closest_shared_layers, f.status, f.severity FROM findings f JOIN"
                           " base_image_details d ON d.finding_id = f.id JOIN images i ON i.id = f.image_id"
                           " WHERE i.reference = 'corp/base:2'").fetchone()
    assert tuple(row) == (1, "fail", "medium")
    tools = report_of(database, "corp/tools:1")["base_image"]
    assert (tools["approved"], tools["closest"]) == (False, None)
    assert report_of(database, "corp/app:1")["base_image"]["approved"] is True


def test_no_approved_list_gives_null_and_the_guessed_boundary(tmp_path, scan):
    base = base_image()
    base.write_oci_layout(tmp_path / "oci", ref="corp/base:1")
    derived(base, "a", "b", "c").write_oci_layout(tmp_path / "oci", ref="corp/app:1", append=True)
    database, _ = scan(f"oci:{tmp_path / 'oci'}", risks=["base_image"])
    got = report_of(database, "corp/app:1")["base_image"]
    assert _core(got) == {"approved": None, "matched": None, "own_layers": 3, "closest": "corp/base:1",
                          "guessed_boundary": 2}
    assert '"approved": null' in json.dumps(report_of(database, "corp/app:1"))


def test_approved_by_digest_and_the_longest_approved_base_wins(tmp_path, scan):
    base = base_image()
    base.write_oci_layout(tmp_path / "oci", ref="corp/base:1")
    middle = derived(base, "runtime")
    middle.write_oci_layout(tmp_path / "oci", ref="corp/runtime:1", append=True)
    derived(middle, "app").write_oci_layout(tmp_path / "oci", ref="corp/app:1", append=True)
    database, _ = scan(f"oci:{tmp_path / 'oci'}:corp/base:1")
    digest = database.execute("SELECT manifest_digest FROM images WHERE reference = 'corp/base:1'").fetchone()[0]
    database, _ = scan(f"oci:{tmp_path / 'oci'}", policy={"base_images": {"approved": [digest, "corp/runtime:1"]}},
                       risks=["base_image"])
    got = report_of(database, "corp/app:1")["base_image"]
    assert (got["approved"], got["matched"], got["own_layers"]) == (True, "corp/runtime:1", 1)
    # an approved base is its own longest approved prefix
    got = report_of(database, "corp/runtime:1")["base_image"]
    assert (got["approved"], got["matched"], got["own_layers"]) == (True, "corp/runtime:1", 0)


def test_docker_hub_spellings_name_the_same_base(tmp_path, scan):
    base = base_image()
    base.write_oci_layout(tmp_path / "oci", ref="docker.io/library/alpine:3.19")
    derived(base, "a").write_oci_layout(tmp_path / "oci", ref="corp/app:1", append=True)
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", policy={"base_images": {"approved": ["alpine:3.19"]}},
                              risks=["base_image"])
    got = report_of(database, "corp/app:1")["base_image"]
    assert (got["approved"], got["matched"]) == (True, "docker.io/library/alpine:3.19")
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}:corp/app:1", risks=["base_image"],
                              policy={"base_images": {"approved": ["alpine"]}})  # alpine:latest: not scanned
    assert report_of(database, "corp/app:1")["base_image"]["approved"] is False


def test_base_later_in_the_same_run_is_a_warning_and_not_approved(tmp_path, scan):
    base = base_image()
    derived(base, "a").write_oci_layout(tmp_path / "oci", ref="corp/app:1")
    base.write_oci_layout(tmp_path / "oci", ref="corp/base:1", append=True)
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", policy={"base_images": {"approved": ["corp/base:1"]}},
                              risks=["base_image"])
    app = next(o for o in outcomes if o.reference == "corp/app:1")
    assert any("corp/base:1 is not in the database" in w for w in app.warnings)
    assert report_of(database, "corp/app:1")["base_image"]["approved"] is False
    # the base itself is approved: it names itself
    assert report_of(database, "corp/base:1")["base_image"]["approved"] is True
    # scanned again, now that the base is known
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}:corp/app:1", policy={"base_images": {"approved": ["corp/base:1"]}},
                              risks=["base_image"])
    assert report_of(database, "corp/app:1")["base_image"]["approved"] is True


def test_cli_approved_base(tmp_path):
    base = base_image()
    base.write_oci_layout(tmp_path / "oci", ref="corp/base:1")
    derived(base, "a").write_oci_layout(tmp_path / "oci", ref="corp/app:1", append=True)
    db = str(tmp_path / "c.db")
    cli = [sys.executable, "-m", "stowaway.ingest.cli"]
    r = subprocess.run(cli + ["scan", f"oci:{tmp_path / 'oci'}", "--db", db, "--no-progress",
                              "--approved-base", "corp/base:1", "--risk", "base_image"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cli + ["report", "corp/app:1", "--db", db], capture_output=True, text=True)
    assert json.loads(r.stdout)["base_image"]["approved"] is True


# --- acceptance on the public corpus ----------------------------------------------------------------

@corpus
def test_corpus_shop_approved_and_tools_not(tmp_path, scan):
    oci = CORPUS / "oci"
    risks = ["base_image", "compliance"]
    database, first = scan(f"oci:{oci}:corpus/debian:bullseye-base", risks=risks)
    assert [o.status for o in first] == ["done"]
    database, outcomes = scan(f"oci:{oci}", policy={"base_images": {"approved": ["corpus/debian:bullseye-base"]}},
                              risks=risks)
    assert all(o.status == "done" for o in outcomes)

    def check(ref, areas):
        out = tmp_path / f"{ref.replace('/', '_')}.json"
        rep = report_of(database, ref)
        out.write_text(json.dumps(rep))
        r = subprocess.run([sys.executable, str(CORPUS / "check_report.py"), str(out), "--only", areas],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
        return rep

    shop = check("corpus/shop:1.0", "base_image")
    assert _core(shop["base_image"]) == {"approved": True, "matched": "corpus/debian:bullseye-base", "own_layers": 9,
                                  "closest": "corpus/debian:bullseye-base", "guessed_boundary": 1}
    if any(p["name"] == "nmap" for p in shop["software"]):  # needs the dpkg analyzer
        check("corpus/shop:1.0", "compliance,base_image")
    tools = check("corpus/tools:1.0", "base_image")
    assert (tools["base_image"]["approved"], tools["base_image"]["closest"]) == (False, None)


def test_closest_among_thousands_of_images_sharing_a_base_layer(db):
    conn = db.conn

    def layer(diff_id):
        return conn.execute("INSERT INTO layers (diff_id) VALUES (?)", [diff_id]).lastrowid

    def image(reference, layer_ids, digest=None):
        image_id = conn.execute("INSERT INTO images (reference, manifest_digest, platform) VALUES (?, ?, '')",
                                [reference, digest or f"sha256:{reference}"]).lastrowid
        conn.executemany("INSERT INTO image_layers (image_id, position, layer_id) VALUES (?, ?, ?)",
                         [(image_id, i, lid) for i, lid in enumerate(layer_ids)])

    l0, l1, l2, l3 = (layer(f"sha256:{c * 64}") for c in "0123")
    image("os/base:1", [l0])
    for i in range(3000):  # siblings: the same OS layer, then their own
        image(f"team/app{i}:1", [l0, layer(f"sha256:sib{i}")])
    image("os/runtime:1", [l0, l1])
    image("os/runtime-fat:1", [l0, l1, layer("sha256:fat")])  # shares as much, but is no true base
    image("me/app:2", [l0, l1, l2, l3])  # built on the image being scanned: not its base
    image("me/app:1", [l0, l1, l2], digest="sha256:me")  # the image itself, scanned before
    conn.commit()
    spec = ImageSpec("me/app:1", "test", "sha256:me", "sha256:c", {},
                     [LayerDescriptor(i, "", f"sha256:{c * 64}") for i, c in enumerate("012")])
    ctx = ImageContext(spec=spec, fs=None, policy={}, db=db)
    [f] = BaseImage({}).collect(ctx, [])
    assert (f.detail["closest"], f.detail["closest_shared_layers"]) == ("os/runtime:1", 2)


def _core(section: dict) -> dict:
    """The report's base_image fields of REPORT.md and the issue; the section may carry more."""
    return {k: section.get(k) for k in ("approved", "matched", "own_layers", "closest", "guessed_boundary")}

"""Whiteouts, opaque directories, replacement and symlink resolution, all in one place: squash.py."""
from stowaway.ingest.layers import OPAQUE, WHITEOUT
from stowaway.ingest.model import DIR, HARDLINK, REG, SYMLINK
from stowaway.ingest.squash import Filesystem


def f(path, size=1, kind=REG, link=""):
    return (path, kind, size, 0o644, 0, 0, link)


def test_whiteout_hides_lower_file_and_subtree():
    fs = Filesystem.build([
        [f("/etc", 0, DIR), f("/etc/passwd", 10), f("/opt", 0, DIR), f("/opt/app", 0, DIR), f("/opt/app/a.jar", 5)],
        [("/etc/passwd", WHITEOUT, 0, 0, 0, 0, ""), ("/opt/app", WHITEOUT, 0, 0, 0, 0, "")],
    ])
    assert not fs.exists("/etc/passwd")
    assert not fs.exists("/opt/app/a.jar")
    assert fs.exists("/opt")
    assert [i.path for i, _ in fs.files()] == []


def test_whiteout_never_hides_same_layer_entries_whatever_the_order():
    # the tar lists the new file first and the whiteout after it: the new file must survive
    fs = Filesystem.build([
        [f("/a/x", 1)],
        [f("/a/x", 2), ("/a/x", WHITEOUT, 0, 0, 0, 0, "")],
    ])
    assert fs.get("/a/x").size == 2
    assert fs.layer_of("/a/x") == 1


def test_opaque_directory_drops_lower_children_only():
    fs = Filesystem.build([
        [f("/d", 0, DIR), f("/d/old1"), f("/d/old2"), f("/keep")],
        [("/d", OPAQUE, 0, 0, 0, 0, ""), f("/d/new")],
    ])
    assert sorted(i.path for i, _ in fs.files()) == ["/d/new", "/keep"]
    assert fs.visible("/d/new", 1)


def test_visible_tracks_which_layer_copy_is_final():
    fs = Filesystem.build([[f("/etc/shadow", 10)], [f("/etc/shadow", 20)]])
    assert fs.visible("/etc/shadow", 1)
    assert not fs.visible("/etc/shadow", 0)
    assert fs.get("/etc/shadow").size == 20


def test_file_replacing_directory_and_back():
    fs = Filesystem.build([
        [f("/x", 0, DIR), f("/x/child")],
        [f("/x", 3)],
        [f("/x/again", 4)],  # a later layer puts a directory back implicitly
    ])
    assert fs.get("/x").type == DIR
    assert fs.exists("/x/again")
    assert not fs.exists("/x/child")


def test_symlink_resolution_stays_inside_the_image():
    fs = Filesystem.build([[
        f("/usr/lib/os-release", 5),
        f("/etc/os-release", 0, SYMLINK, "../usr/lib/os-release"),
        f("/etc/escape", 0, SYMLINK, "../../../../../../etc/passwd"),
        f("/etc/passwd", 7),
        f("/abs", 0, SYMLINK, "/usr/lib/os-release"),
        f("/loop1", 0, SYMLINK, "/loop2"),
        f("/loop2", 0, SYMLINK, "/loop1"),
        f("/lib", 0, SYMLINK, "usr/lib"),
    ]])
    assert fs.read_target("/etc/os-release") == "/usr/lib/os-release"
    assert fs.resolve("/etc/escape") == "/etc/passwd"  # '..' at the root stays at the root
    assert fs.read_target("/abs") == "/usr/lib/os-release"
    assert fs.resolve("/loop1") is None
    assert fs.read_target("/lib/os-release") == "/usr/lib/os-release"  # symlinked parent directory


def test_hard_link_counts_as_a_file_and_reads_its_target():
    fs = Filesystem.build([[f("/usr/bin/perl", 100), ("/usr/bin/perl5", HARDLINK, 100, 0o755, 0, 0, "/usr/bin/perl")]])
    assert len(list(fs.files())) == 2
    assert fs.read_target("/usr/bin/perl5") == "/usr/bin/perl"


def _tree(fs) -> list:
    """Every node (path, its entry, its layer, whether a directory), the root included, in walk order."""
    out, stack = [], [("/", fs.root)]
    while stack:
        path, node = stack.pop()
        out.append((path, node[0], node[1], node[2] is not None))
        for name in sorted(node[2] or {}, reverse=True):
            stack.append((path.rstrip("/") + "/" + name, node[2][name]))
    return out


def test_runs_of_one_directory_added_at_once_make_the_tree_entries_one_at_a_time_make(monkeypatch):
    """The squash adds a long run of one directory's entries in one step (squash._RUN); the tree is the one
    adding them one by one makes, whatever the runs hold: directories, files replacing directories and
    back, links, duplicates, the root, whiteouts and opaque markers, paths in and out of order."""
    import random

    from stowaway.ingest import squash

    rnd = random.Random(16)
    dirs = ["/a", "/a/b", "/a/b/c", "/d", "/d/e", "/x"]
    kinds = [REG] * 6 + [DIR, SYMLINK, HARDLINK]

    def entry():
        roll = rnd.random()
        if roll < 0.01:
            return f("/", 0, DIR)
        if roll < 0.03:
            return (rnd.choice(dirs + [d + "/n1" for d in dirs]), rnd.choice([WHITEOUT, OPAQUE]), 0, 0, 0, 0, "")
        kind = rnd.choice(kinds)
        path = rnd.choice(dirs) + "/" + rnd.choice(["n1", "n2", "n3", "b", "e", "c"]) if rnd.random() < 0.3 else \
            rnd.choice(dirs) + f"/f{rnd.randrange(60)}"
        return f(path, rnd.randrange(9), kind, "/a/n1" if kind in (SYMLINK, HARDLINK) else "")

    def layer():
        out = []
        for _ in range(rnd.randrange(1, 12)):  # runs of one directory, as tars list them
            folder = rnd.choice(dirs + ["/a/b/c/deep"])
            out += [f(f"{folder}/r{i}", i) for i in range(rnd.randrange(0, 60))]
            out += [entry() for _ in range(rnd.randrange(0, 8))]
        if rnd.random() < 0.2:  # names with no slash at all (never a walker's, but the squash takes them)
            out += [f(f"bare{i}") for i in range(rnd.randrange(20))]
        return out

    for _ in range(60):
        layers = [layer() for _ in range(rnd.randrange(1, 5))]
        if rnd.random() < 0.5:  # layers without markers take the run path throughout
            layers = [[e for e in lay if e[1] not in (WHITEOUT, OPAQUE)] for lay in layers]
        at_once = _tree(Filesystem.build(layers))
        monkeypatch.setattr(squash, "_RUN", 1 << 30)
        one_by_one = _tree(Filesystem.build(layers))
        monkeypatch.undo()
        assert at_once == one_by_one

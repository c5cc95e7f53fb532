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

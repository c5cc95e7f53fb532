"""Directory exclusions ('/usr/*') are a prefix test in the walk: it must decide as the regex does."""
import random

from stowaway.analyzers.secrets.analyzer import Secrets


def test_prefix_test_decides_as_the_exclusion_regex():
    confs = [{}, {"exclude_paths": ["/opt/x/*", "/a?/*", "/srv/**", "*.md"], "include_paths": ["/usr/src/app/*"]},
             {"default_excludes": False, "exclude_paths": ["/data/*"]}]
    parts = ["usr", "lib", "opt", "x", "a1", "srv", "src", "app", "node_modules", "f.md", "t\nx", "var", "log",
             "data", ""]
    rnd = random.Random(1)
    for conf in confs:
        analyzer = Secrets({"secrets": conf})
        assert analyzer.excluded_dirs  # the prefix path is taken
        for _ in range(20000):
            path = "/" + "/".join(rnd.choice(parts) for _ in range(rnd.randint(1, 5)))
            by_regex = analyzer.excluded.fullmatch(path) is not None and not (
                analyzer.included and analyzer.included.fullmatch(path))
            assert analyzer.is_excluded(path) == by_regex, path
    assert Secrets({}).is_excluded("/usr/share/doc/x") and not Secrets({}).is_excluded("/usr/a\nb")


def _layer_tar() -> bytes:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tf:
        def add(name, kind=tarfile.REGTYPE, size=10, link=""):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = size if kind == tarfile.REGTYPE else 0
            tf.addfile(info, io.BytesIO(b"x" * info.size) if kind == tarfile.REGTYPE else None)

        for d in ("usr", "usr/share", "usr/lib", "app", "app/node_modules", "app/node_modules/m"):
            add(d, tarfile.DIRTYPE)
        for i in range(300):
            add(f"usr/share/f{i}", size=i * 7 % 3000)
            if i % 50 == 0:
                add(f"usr/share/d{i}", tarfile.DIRTYPE)
                add(f"usr/share/l{i}", tarfile.SYMTYPE, link="f1")
                add(f"app/a{i}", size=2000)  # over the file limit below
                add(f"app/node_modules/m/R{i}.md")  # excluded by a default pattern, not a prefix
        add("usr/share/hard", tarfile.LNKTYPE, link="usr/share/f1")
        add("usr/new\nline")
        add("usr/lib/os-release")
    return out.getvalue()


class _Other:
    """Another analyzer of the walk, which passes over /app/ as well (so its skim indexes files there)."""

    name = "other"

    def skipped_prefixes(self):
        return ("/usr/", "/app/")

    def required(self, path, info):
        return False


def test_files_passed_over_are_counted_from_the_skim_as_entry_by_entry(monkeypatch):
    """The secrets tally of files passed over counts the walker's skimmed stretches as they stand; it is
    the tally made entry by entry, and a skim made for other analyzers' prefixes is not taken for it."""
    import io

    from stowaway.ingest.apply import Applier, IndexedLayer
    from stowaway.ingest.layers import ForwardReader, walk
    from stowaway.ingest.model import ImageSpec
    from stowaway.ingest.streams import Limits

    monkeypatch.setattr(ForwardReader, "CHUNK", 4096)  # many stretches, cut at chunk ends
    policy = {"secrets": {"max_file_size": 1000}}
    secrets = Secrets(policy)
    data = _layer_tar()

    def tally(entries, skimmed):
        layer = IndexedLayer(0, "sha256:" + "0" * 64, entries, records={"secrets": []}, skimmed=skimmed)
        spec = ImageSpec("t:1", "test", "sha256:" + "1" * 64, "sha256:" + "2" * 64, {}, [])
        return Applier([secrets], policy).apply(spec, [layer]).facts["secrets_skipped"]

    read = walk(io.BytesIO(data), 0, [secrets], Limits(), "test")
    assert read.walked_for == ("secrets",) and len(read.skim_blocks) > 3
    assert sum(files for _, _, files in read.skim_blocks) > 100
    by_entry = tally(read.entries, None)
    assert by_entry["excluded"] == 300 + 1 + 1 + 6 and by_entry["too_large"] == 6
    assert tally(read.entries, (read.walked_for, read.skim_blocks)) == by_entry
    other = walk(io.BytesIO(data), 0, [_Other()], Limits(), "test")
    assert sum(files for _, _, files in other.skim_blocks) > sum(files for _, _, files in read.skim_blocks)
    assert tally(other.entries, (other.walked_for, other.skim_blocks)) == by_entry

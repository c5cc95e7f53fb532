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

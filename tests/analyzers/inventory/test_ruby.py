"""Ruby gemspecs as RubyGems writes them into specifications/."""
from __future__ import annotations

from app_harness import inspect

GEMSPEC = '''# -*- encoding: utf-8 -*-
# stub: rack 2.2.3 ruby lib

Gem::Specification.new do |s|
  s.name = "rack".freeze
  s.version = "2.2.3"
  s.licenses = ["MIT".freeze]
  s.summary = "a modular Ruby webserver interface".freeze
end
'''


def test_installed_gemspecs():
    layers = [{"usr/local/bundle/specifications/rack-2.2.3.gemspec": GEMSPEC,
               "usr/local/bundle/gems/rack-2.2.3/rack.gemspec": GEMSPEC,  # a gem's source copy is not an install
               "usr/lib/ruby/gems/3.0.0/specifications/default/json-2.5.1.gemspec":
                   'Gem::Specification.new do |s|\n  s.name = "json"\n  s.version = "2.5.1"\n  s.license = "Ruby"\nend\n'}]
    got = sorted((p.name, p.version, p.path, p.licenses, p.purl) for p in inspect(layers, ("ruby-gemspec",)).packages)
    assert got == [
        ("json", "2.5.1", "/usr/lib/ruby/gems/3.0.0/specifications/default/json-2.5.1.gemspec", ("Ruby",),
         "pkg:gem/json@2.5.1"),
        ("rack", "2.2.3", "/usr/local/bundle/specifications/rack-2.2.3.gemspec", ("MIT",), "pkg:gem/rack@2.2.3"),
    ]

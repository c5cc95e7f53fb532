""".NET deps.json: NuGet packages and the project itself, not the runtime packs."""
from __future__ import annotations

import json

from app_harness import inspect


def test_deps_json_libraries():
    deps = {"runtimeTarget": {"name": ".NETCoreApp,Version=v6.0"},
            "libraries": {"Shop.Api/1.0.0": {"type": "project"},
                          "Newtonsoft.Json/12.0.1": {"type": "package", "sha512": "sha512-x"},
                          "Microsoft.NETCore.App.Runtime/6.0.0": {"type": "runtimepack"},
                          "broken": {"type": "package"}}}
    got = sorted((p.name, p.version, p.path, p.purl) for p in
                 inspect([{"app/Shop.Api.deps.json": json.dumps(deps)}], ("dotnet-deps",)).packages)
    assert got == [("Newtonsoft.Json", "12.0.1", "/app/Shop.Api.deps.json", "pkg:nuget/Newtonsoft.Json@12.0.1"),
                   ("Shop.Api", "1.0.0", "/app/Shop.Api.deps.json", "pkg:nuget/Shop.Api@1.0.0")]

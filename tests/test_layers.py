"""Dependencies point one way: ccnet ← export ← calib ← runtime ← cli, with plugins (the
plugin library's loader and op contract) a leaf that imports none of them.  Every import counts,
those inside functions included: a lazy import is still a dependency."""
from __future__ import annotations

import ast
import os

from helpers import REPO

ORDER = ["ccnet", "export", "calib", "runtime", "cli"]
PACKAGES = ORDER + ["plugins"]


def imported_packages(path: str) -> set:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {name.split(".")[0] for name in names} & set(PACKAGES)


def test_imports_point_down_the_layers_only():
    upward = []
    for package in PACKAGES:
        below = set() if package == "plugins" else set(ORDER[:ORDER.index(package)])
        allowed = below | {"plugins", package}
        for root, _, files in os.walk(os.path.join(REPO, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    for target in imported_packages(path) - allowed:
                        upward.append(f"{os.path.relpath(path, REPO)} imports {target}")
    assert not upward, upward

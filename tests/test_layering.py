"""The core never imports a plugin; plugins use only kcore's public surface."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_core_never_imports_a_plugin():
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in _imports(path) if m.startswith("kcore.plugins.")
        )
        for path in (ROOT / "core").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_plugins_import_only_kcore_public_modules_or_their_own():
    public = {
        "kcore",
        "kcore.api",
        "kcore.client",
        "kcore.controllers",
        "kcore.registry",
        "kcore.store",
        "kcore.errors",
        "kcore.images",
        "kcore.interfaces",
        "kcore.netinfo",
        "kcore.pods",
        "kcore.settings",
        # issuing certificates with the cluster CA, as the CSR signer does
        "kcore.pki",
    }
    offenders = {}
    for path in (ROOT / "plugins").rglob("*.py"):
        parts = path.relative_to(ROOT / "plugins").parts
        own = f"kcore.plugins.{parts[0]}" if len(parts) > 1 else "kcore.plugins"
        bad = sorted(
            m
            for m in _imports(path)
            if m.startswith("kcore")
            and m not in public
            and not m.startswith(("kcore.api.", "kcore.pods.", "kcore.conformance"))
            and not m.startswith(own)
        )
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}

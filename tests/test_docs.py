"""The documentation cannot drift from the code: every hookspec has a current, generated
reference page and is explained in the guide, and every relative link in docs/ leads
somewhere."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kcore import FilterStep, docsgen, hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"
GUIDE = DOCS / "plugin-authors.md"
REGENERATE = "python -m kcore.docsgen docs/reference"


def test_every_hookspec_has_a_reference_page():
    missing = [name for name in hookspecs._all_specs() if not (REFERENCE / f"{name}.md").exists()]
    assert not missing, f"no reference page for {missing}: run {REGENERATE}"


def test_the_reference_pages_are_current():
    problems = docsgen.check(REFERENCE)
    assert not problems, "\n".join([*problems, f"run: {REGENERATE}"])


def test_the_guide_explains_every_hookspec():
    guide = GUIDE.read_text()
    missing = [name for name in hookspecs._all_specs() if f"`{name}`" not in guide]
    assert not missing, f"docs/plugin-authors.md does not mention {missing}"


def test_every_relative_link_in_docs_resolves():
    broken = []
    for page in sorted(DOCS.rglob("*.md")):
        for target in links(page.read_text()):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto: ...
                continue
            path_part, _, anchor = target.partition("#")
            path = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(ROOT)}: ({target})"
            if not path.exists():
                broken.append(f"{where}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path.read_text()):
                broken.append(f"{where}: no heading #{anchor} in {path.name}")
    assert not broken, "\n".join(broken)


def test_a_new_hookspec_gets_a_page_and_its_absence_is_reported(monkeypatch, tmp_path):
    def kcore_fake_things(settings) -> list[FilterStep]:
        """Things, for a test.

        :param settings: the settings.
        :returns: a list of :class:`kcore.interfaces.FilterStep`.
        """

    monkeypatch.setattr(hookspecs, "kcore_fake_things", kcore_fake_things, raising=False)
    pages = docsgen.pages()
    page = pages["kcore_fake_things.md"]
    assert "def kcore_fake_things(settings) -> list[FilterStep]:" in page
    assert "## Returns: `FilterStep`" in page and "def filter(pod: Mapping" in page
    assert "[`kcore_fake_things`](kcore_fake_things.md)" in pages["README.md"]
    shutil.copytree(REFERENCE, tmp_path / "reference")
    problems = docsgen.check(tmp_path / "reference")
    assert any(p.endswith("kcore_fake_things.md: missing") for p in problems), problems
    assert any(p.endswith("README.md: stale") for p in problems), problems
    docsgen.write(tmp_path / "reference")
    assert docsgen.check(tmp_path / "reference") == []


def test_check_exits_1_on_a_stale_page_and_write_repairs_it(tmp_path):
    reference = tmp_path / "reference"
    shutil.copytree(REFERENCE, reference)
    (reference / "kcore_store.md").write_text("edited by hand\n")
    (reference / "kcore_gone.md").write_text("a hook that is gone\n")
    command = [sys.executable, "-m", "kcore.docsgen"]
    proc = subprocess.run([*command, "--check", str(reference)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{reference / 'kcore_store.md'}: stale" in proc.stderr
    assert "kcore_gone.md: not generated" in proc.stderr
    proc = subprocess.run([*command, str(reference)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not (reference / "kcore_gone.md").exists()
    proc = subprocess.run([*command, "--check", str(reference)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("rst", "md"),
    [
        ("Use ``x < y`` and :class:`~kcore.store.Store`.", "Use `x < y` and `Store`."),
        (
            "See :meth:`kcore.Store.watch` for <data-dir>.",
            "See `kcore.Store.watch` for &lt;data-dir&gt;.",
        ),
        (
            ":param settings: the data\n    directory.\n:returns: a list.",
            "- **`settings`**: the data directory.\n- **returns**: a list.",
        ),
        (
            "Override it::\n\n    @pytest.fixture\n    def f():\n        return 1\n\nDone.",
            "Override it:\n\n```python\n@pytest.fixture\ndef f():\n    return 1\n```\n\nDone.",
        ),
        ("A literal that ``spans\n  two lines``.", "A literal that `spans two lines`."),
    ],
)
def test_docstrings_become_markdown(rst, md):
    assert docsgen.markdown(rst) == md


# -- helpers -------------------------------------------------------------------------------------


def links(markdown: str) -> list[str]:
    """Link targets outside code blocks and code spans."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of a page."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out

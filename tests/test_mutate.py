"""scripts/mutate.py: it finds the mutants it should, a suite that checks a boundary kills
the boundary mutant, and the mutated file is always back to its original bytes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "mutate.py"

# Formatting that ast.unparse would not reproduce (comments, quotes, spacing), so that a
# restore that re-emitted the source instead of the original bytes would show.
MODULE = '''\
"""Ages."""
import logging

log = logging.getLogger(__name__)
__all__ = ["is_adult", "untested"]


def is_adult(age: int) -> bool:
    log.debug("checking %s", age)   # a logging call is never mutated
    return age >= 18


def untested(flag):
    if flag:
        return 'yes'
    return None
'''

TESTS = """\
from calc import is_adult


def test_boundary():
    assert is_adult(18)
    assert not is_adult(17)
"""


@pytest.fixture(scope="module")
def mutate():
    spec = importlib.util.spec_from_file_location("kcore_mutate_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture
def project(tmp_path):
    (tmp_path / "calc.py").write_text(MODULE)
    (tmp_path / "test_calc.py").write_text(TESTS)
    return tmp_path


def test_finds_semantic_mutants_only(mutate):
    keys = [m.key for m in mutate.find_mutants(MODULE)]
    assert "is_adult: >= -> > in `age >= 18`" in keys
    assert "is_adult: 18 -> 19" in keys
    assert "is_adult: `return age >= 18` -> `return None`" in keys
    assert "untested: negate condition `flag`" in keys
    text = "\n".join(keys)
    assert "log" not in text  # neither the logging call nor the logger
    assert "__all__" not in text and "Ages" not in text
    assert "int" not in text  # annotations
    only = mutate.find_mutants(MODULE, ["untested"])
    assert only and all(m.scope == "untested" for m in only)


def test_apply_mutant_changes_one_thing(mutate):
    mutant = next(m for m in mutate.find_mutants(MODULE) if m.description.startswith(">= -> >"))
    mutated = mutate.apply_mutant(MODULE, mutant)
    assert "return age > 18" in mutated
    assert "age >= 18" not in mutated


@pytest.mark.parametrize("in_place", [False, True], ids=["overlay", "in-place"])
def test_boundary_mutant_killed_and_file_restored(mutate, project, in_place):
    original = (project / "calc.py").read_bytes()
    out = project / "result.json"
    argv = [
        "--file", str(project / "calc.py"),
        "--cmd", f"{sys.executable} -m pytest -q -p no:cacheprovider test_calc.py",
        "--cwd", str(project),
        "--only", "is_adult",
        "--timeout", "60",
        "--json", str(out),
    ]  # fmt: skip
    if in_place:
        argv.append("--in-place")
    assert mutate.main(argv) == 0
    assert (project / "calc.py").read_bytes() == original
    results = {r["key"]: r["status"] for r in json.loads(out.read_text())["results"]}
    assert results["is_adult: >= -> > in `age >= 18`"] == "killed"
    assert results["is_adult: 18 -> 19"] == "killed"
    # 18 -> 0 keeps is_adult(18) true but makes is_adult(17) true as well.
    assert results["is_adult: 18 -> 0"] == "killed"


def test_survivor_reported(mutate, project):
    out = project / "result.json"
    argv = [
        "--file", str(project / "calc.py"),
        "--cmd", f"{sys.executable} -m pytest -q -p no:cacheprovider test_calc.py",
        "--cwd", str(project),
        "--only", "untested",
        "--json", str(out),
    ]  # fmt: skip
    assert mutate.main(argv) == 0
    data = json.loads(out.read_text())
    assert data["summary"]["survived"] == data["summary"]["run"] > 0
    assert data["summary"]["score"] == 0.0


def test_in_place_restores_on_interrupt(mutate, project, monkeypatch):
    path = project / "calc.py"
    original = path.read_bytes()
    target = mutate.Target(name="calc", file=path, cmd="true", timeout=10)
    runner = mutate.Runner(target, in_place=True, cwd=project)
    mutant = mutate.find_mutants(MODULE, ["is_adult"])[0]
    seen = []

    def interrupted(*args, **kwargs):
        seen.append(path.read_bytes())
        raise KeyboardInterrupt

    monkeypatch.setattr(mutate, "run_command", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run_mutant(mutant)
    finally:
        runner.close()
    assert seen and seen[0] != original  # the mutant was in the file during the run
    assert path.read_bytes() == original
    runner.verify_restored()


def test_timeout_counts_as_caught(mutate, project):
    (project / "test_calc.py").write_text(
        "import time\nfrom calc import is_adult\n\n\ndef test_hang():\n"
        "    if is_adult(17):\n        time.sleep(600)\n"
    )
    target = mutate.Target(
        name="calc",
        file=project / "calc.py",
        cmd=f"{sys.executable} -m pytest -q -p no:cacheprovider test_calc.py",
        timeout=5,
    )
    runner = mutate.Runner(target, cwd=project)
    try:
        runner.baseline()
        mutant = next(m for m in mutate.find_mutants(MODULE) if m.key == "is_adult: 18 -> 0")
        assert runner.run_mutant(mutant).status == "timeout"
    finally:
        runner.close()


# Each test run of the --jobs test notes its pytest basetemp and then waits (bounded) until
# the other run has noted its own: with two at a time both meet.
MEETING = """\
import os
import time
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def meet(tmp_path_factory):
    folder = os.environ.get("CALC_MEETING")
    if not folder:
        return
    arrived = Path(folder, "arrived")
    (arrived / str(os.getpid())).write_text(str(tmp_path_factory.getbasetemp()))
    deadline = time.monotonic() + 60
    while len(os.listdir(arrived)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    if len(os.listdir(arrived)) >= 2:
        Path(folder, "met", str(os.getpid())).touch()
"""


def test_jobs_run_mutants_at_once_with_the_same_results(mutate, project, monkeypatch):
    (project / "conftest.py").write_text(MEETING)
    argv = [
        "--file", str(project / "calc.py"),
        "--cmd", f"{sys.executable} -m pytest -q -p no:cacheprovider test_calc.py",
        "--cwd", str(project),
        "--max", "2", "--seed", "1",  # one killed mutant and one survivor
        "--timeout", "120",
        "--no-baseline",  # the baseline would wait for a partner alone
    ]  # fmt: skip

    def statuses(*extra: str) -> list[tuple[str, str]]:
        out = project / "result.json"
        assert mutate.main([*argv, "--json", str(out), *extra]) == 0
        return [(r["key"], r["status"]) for r in json.loads(out.read_text())["results"]]

    one_at_a_time = statuses()
    assert one_at_a_time == [
        ("is_adult: >= -> > in `age >= 18`", "killed"),
        ("untested: negate condition `flag`", "survived"),
    ]
    meeting = project / "meeting"
    (meeting / "arrived").mkdir(parents=True)
    (meeting / "met").mkdir()
    monkeypatch.setenv("CALC_MEETING", str(meeting))
    assert statuses("--jobs", "2") == one_at_a_time  # in the list's order
    assert len(list((meeting / "met").iterdir())) == 2  # the two runs overlapped
    basetemps = [Path(p.read_text()) for p in (meeting / "arrived").iterdir()]
    assert len(set(basetemps)) == 2 and {p.name for p in basetemps} == {"pytest"}


def test_in_place_refuses_jobs(mutate, project, capsys):
    argv = ["--file", str(project / "calc.py"), "--cmd", "true", "--in-place", "--jobs", "2"]
    with pytest.raises(SystemExit) as exit_info:
        mutate.main(argv)
    assert exit_info.value.code != 0
    assert "--in-place runs one mutant at a time" in capsys.readouterr().err

"""The repository's contracts: CI runs the README's commands; the Dockerfile installs the same."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, import_or_missing, missing_install


def _readme_commands() -> list[str]:
    """The README's install, main-job, test and quick-tier commands: the ```bash blocks of
    "Quick start" marked ``<!-- quick start: install -->``, ``... train -->``, ``... test -->``
    and ``... quick -->``."""
    text = (REPO / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    marked = r"<!-- quick start: (\w+) -->\n```bash\n(.*?)```"
    blocks = dict(re.findall(marked, quick, flags=re.S))
    missing = {"install", "train", "test", "quick"} - set(blocks)
    assert not missing, f"README Quick start lacks <!-- quick start: ... --> for {sorted(missing)}"
    return [blocks[k].strip() for k in ("install", "train", "test", "quick")]


# The README's two test commands: the full suite (what CI runs, with the slowest tests listed)
# and the quick tier to run after every change.
FULL_TESTS = ".venv/bin/python -m pytest -n 2 --dist loadfile --durations=15"
QUICK_TESTS = '.venv/bin/python -m pytest -n 2 --dist loadfile -m "not slow"'


def test_ci_runs_the_readme_install_and_test_commands():
    install = _readme_commands()[0]
    lines = [ln.strip() for block in _readme_commands() for ln in block.splitlines()]
    assert ".venv" in install and "[test]" in install
    assert any(ln.endswith("python -m tinytracker.train") for ln in lines)
    assert FULL_TESTS in lines and QUICK_TESTS in lines
    ci_lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    assert install in ci_lines
    assert FULL_TESTS in ci_lines
    assert ci_lines.index(install) < ci_lines.index(FULL_TESTS)
    assert "export CI=true" in ci_lines  # a missing install step fails CI (tests/conftest.py)


def test_dockerfile_installs_like_the_readme_and_copies_existing_files():
    install = _readme_commands()[0]
    docker = (REPO / "Dockerfile").read_text()
    assert f"RUN {install}" in docker
    for line in docker.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
    assert "ARG BASE_IMAGE" in docker


def test_ruff_is_clean():
    """CI's lint step: ``ruff check tinytracker tests`` (the style every file keeps)."""
    import_or_missing("ruff", "pip install -e '.[test]' (ruff)")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "tinytracker", "tests"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, f"ruff check tinytracker tests:\n{proc.stdout}{proc.stderr}"


def test_missing_install_skips_here_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="the widget is absent"):
        missing_install("the widget is absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true, but the widget is absent"):
        missing_install("the widget is absent")
    with pytest.raises(pytest.fail.Exception, match="no_such_module_here"):
        import_or_missing("no_such_module_here", "pip install it")

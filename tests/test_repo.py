"""The repository's contracts: CI runs the README's commands; the Dockerfile installs the same."""

from __future__ import annotations

import re

from tests.conftest import REPO


def _readme_commands() -> list[str]:
    """The README's install, main-job and test commands: the ```bash blocks of "Quick start"
    marked ``<!-- quick start: install -->``, ``... train -->`` and ``... test -->``."""
    text = (REPO / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    marked = r"<!-- quick start: (\w+) -->\n```bash\n(.*?)```"
    blocks = dict(re.findall(marked, quick, flags=re.S))
    missing = {"install", "train", "test"} - set(blocks)
    assert not missing, f"README Quick start lacks <!-- quick start: ... --> for {sorted(missing)}"
    return [blocks[k].strip() for k in ("install", "train", "test")]


def test_ci_runs_the_readme_install_and_test_commands():
    install, main_job, test = _readme_commands()
    assert ".venv" in install and "[test]" in install
    assert main_job.endswith("python -m tinytracker.train")
    ci_lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    assert install in ci_lines
    assert test in ci_lines
    assert ci_lines.index(install) < ci_lines.index(test)


def test_dockerfile_installs_like_the_readme_and_copies_existing_files():
    install = _readme_commands()[0]
    docker = (REPO / "Dockerfile").read_text()
    assert f"RUN {install}" in docker
    for line in docker.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
    assert "ARG BASE_IMAGE" in docker

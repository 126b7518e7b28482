"""The Docker image's contracts, checked without building it (the build itself is
``docker/build_and_smoke_test.sh``, README "Docker"): the Dockerfile installs exactly as the
README does, copies files that exist and that ``.dockerignore`` lets through, and the build
context leaves data, outputs, environments and caches out."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest

from tests.conftest import REPO
from tests.test_repo import _readme_commands

SCRIPT = REPO / "docker" / "build_and_smoke_test.sh"


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    lines = [ln for ln in (REPO / "Dockerfile").read_text().splitlines()
             if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _copy_sources() -> list[str]:
    sources = []
    for word, rest in _dockerfile_instructions():
        if word in ("COPY", "ADD"):
            args = [a for a in shlex.split(rest) if not a.startswith("--")]
            sources += args[:-1]
    return sources


def _dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern:
    """Docker's .dockerignore syntax: relative to the context root, ``*`` and ``?`` stay within
    one path component, ``**`` spans any number of them."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out: a pattern matching the path or one of its
    parent directories excludes it; the last matching pattern wins (``!`` re-includes)."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw.removeprefix("!")).lstrip("/")
        regex = _pattern_regex(pattern)
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_matcher_follows_docker_semantics():
    patterns = ["data", "**/*.ckpt", "*.tflite", "outputs", "!outputs/keep.txt"]
    assert dockerignored("data/GazeCapture/00002/frames/00000.jpg", patterns)
    assert not dockerignored("tinytracker/data/datamodule.py", patterns)  # root-relative
    assert dockerignored("runs/a/checkpoints/last.ckpt", patterns)
    assert dockerignored("TinyTracker.tflite", patterns)
    assert not dockerignored("shared/TinyTracker.tflite", patterns)  # * stays in one level
    assert not dockerignored("outputs/keep.txt", patterns)


def test_dockerfile_runs_exactly_the_readme_install_command():
    install = _readme_commands()[0]
    runs = [rest for word, rest in _dockerfile_instructions() if word == "RUN"]
    assert runs == [install], f"the Dockerfile's RUN steps {runs} are not the README's {install}"


def test_dockerfile_copies_files_that_exist_and_reach_the_build_context():
    patterns = _dockerignore_patterns()
    sources = _copy_sources()
    assert {"pyproject.toml", "tinytracker"} <= set(sources)  # the configs are tinytracker/conf
    for src in sources:
        assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
        tracked = subprocess.run(["git", "ls-files", "--", src], cwd=REPO, check=True,
                                 capture_output=True, text=True).stdout.split()
        assert tracked, f"Dockerfile copies {src}, which git does not track"
        dropped = [f for f in tracked if dockerignored(f, patterns)]
        assert not dropped, f".dockerignore drops files the Dockerfile copies: {dropped[:5]}"


def test_pip_install_finds_everything_it_reads_in_the_image():
    """pyproject's readme and package data must be among the copied files, else pip fails
    in the image only."""
    sources = set(_copy_sources())
    pyproject = (REPO / "pyproject.toml").read_text()
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', pyproject, flags=re.M)
    assert readme and readme.group(1) in sources
    configs = list((REPO / "tinytracker" / "conf").rglob("*.yaml"))
    assert configs and all(str(c.relative_to(REPO)).split("/")[0] in sources for c in configs)


@pytest.mark.parametrize("path", [
    "data/GazeCapture/00002/frames/00000.jpg", "outputs/train/run/metrics.json",
    "multirun/0/metrics.json", ".venv/bin/python", ".venv-imx500/bin/imxconv-pt",
    ".git/HEAD", "tinytracker/__pycache__/train.cpython-311.pyc", ".cache/tinytracker/x",
    "outputs/train/run/wandb/offline-run-1/run.wandb", "wandb/run-1/files/config.yaml",
    "run/checkpoints/last.ckpt", "export_imx500/model.onnx", ".pytest_cache/v/cache",
])
def test_dockerignore_keeps_data_outputs_envs_and_caches_out(path):
    assert dockerignored(path, _dockerignore_patterns()), f"{path} would enter the build context"


def test_image_defaults():
    instructions = _dockerfile_instructions()
    words = [w for w, _ in instructions]
    assert words[0] == "ARG" and instructions[0][1].startswith("BASE_IMAGE="), \
        "the base image must be a build argument declared before FROM"
    assert ("FROM", "${BASE_IMAGE}") in instructions
    cmd = [rest for w, rest in instructions if w == "CMD"]
    assert cmd == ['["python", "-m", "tinytracker.train"]']


def test_build_script_is_valid_bash_and_runs_the_fast_training_run():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    assert os.access(SCRIPT, os.X_OK), f"{SCRIPT} is not executable"
    text = SCRIPT.read_text()
    assert "python -m tinytracker.train trainer.fast_dev_run=true" in text
    assert '-f "$REPO/Dockerfile"' in text

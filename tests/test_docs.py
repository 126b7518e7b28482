"""The README and the manuals in docs/ say what the code does.

How commands are marked: a fenced ```bash block directly after a line ``<!-- test: run -->`` is
run by :func:`test_marked_blocks_run`, as written, with ``bash -eo pipefail``. The blocks of one
page run in order in one fresh directory (a block may use what an earlier block of its page
wrote), with ``python`` the interpreter running the tests, this checkout's package first on
``PYTHONPATH``, ``WANDB_MODE=offline`` and the test session's private dataset cache
(``TINYTRACKER_CACHE_DIR``). Mark only quick commands (``--help``, ``--cfg job``,
``trainer.fast_dev_run=true`` on small data); all marked blocks together should stay under about
two minutes on 2 cores.

The other tests read every page without running anything: every ``python -m tinytracker.X`` is a
module with a ``__main__`` guard; every relative link reaches a file (and heading); every
repository path in a code span exists; every Hydra command in a ```bash block composes (its
groups and keys exist) and every ``key=`` of the other commands is one of their arguments.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
MARKED = re.compile(r"<!-- test: run -->\n```bash\n(.*?)^```", re.S | re.M)
COMMAND = re.compile(r"python -m (tinytracker(?:\.\w+)*)")
PATH_ROOTS = ("tinytracker/", "tests/", "docs/", "sweeps/", "docker/", ".ci/")
SHELL_OPERATORS = {"&&", "||", "|", ";", ">", ">>", "2>&1"}
BLOCK_TIMEOUT_S = 300


def _rel(page: Path) -> str:
    return str(page.relative_to(REPO))


def _exists(rel: str) -> bool:
    """A repository path exists."""
    return (REPO / rel).exists()


def _prose(text: str) -> str:
    """The page without its fenced blocks (whose ``#`` lines are comments, not headings)."""
    return FENCE.sub("", text)


# ----------------------------------------------------------------------------- commands named
def _module_file(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package runs as its __main__
        spec = importlib.util.find_spec(name + ".__main__")
    return Path(spec.origin) if spec and spec.origin else None


def _named_commands() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for page in PAGES:
        for name in COMMAND.findall(page.read_text()):
            found.setdefault(name, set()).add(_rel(page))
    return found


def test_every_named_command_is_a_module_with_a_main():
    named = _named_commands()
    assert len(named) >= 13, f"expected the README's command table, found only {sorted(named)}"
    for name, pages in sorted(named.items()):
        path = _module_file(name)
        assert path is not None, f"{sorted(pages)} name `python -m {name}`, which does not exist"
        assert '__name__ == "__main__"' in path.read_text(), (
            f"{sorted(pages)} name `python -m {name}`, but {path} has no __main__ guard")


# Scripts with a ``__main__`` guard that are no user's command: the LiteRT environment's python
# runs this one by path (tinytracker/export/litert_env.py).
NOT_COMMANDS = {"tinytracker.export.litert_worker"}


def test_the_readme_command_table_lists_every_command():
    """Every module with a ``__main__`` guard appears in the README's command table."""
    table = _section(REPO / "README.md", "Commands")
    listed = set(re.findall(r"^\| `python -m (tinytracker(?:\.\w+)*)`", table, re.M))
    mains = set()
    for path in (REPO / "tinytracker").rglob("*.py"):
        if '__name__ == "__main__"' in path.read_text():
            parts = path.relative_to(REPO).with_suffix("").parts
            mains.add(".".join(parts[:-1] if parts[-1] == "__main__" else parts))
    mains -= NOT_COMMANDS
    assert mains - listed == set(), f"commands missing from the README's table: {mains - listed}"
    assert listed - mains == set(), f"the README's table lists non-commands: {listed - mains}"


def _section(page: Path, title: str) -> str:
    text = page.read_text()
    assert f"\n## {title}\n" in text, f"{_rel(page)} has no '## {title}' section"
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_layout_lists_every_package():
    block = FENCE.search(_section(REPO / "README.md", "Layout"))
    assert block, "README 'Layout' has no fenced block"
    lines = block.group(2).splitlines()
    listed = {ln.split()[0].rstrip("/") for ln in lines if ln.startswith("  ") and ln.strip()}
    top = {ln.split()[0] for ln in lines if ln and not ln.startswith(" ")}
    packages = {p.parent.name for p in (REPO / "tinytracker").glob("*/__init__.py")}
    missing = packages - listed
    assert missing == set(), f"packages missing from the README layout: {sorted(missing)}"
    for name in listed:
        assert _exists(f"tinytracker/{name}"), f"README layout lists tinytracker/{name}: not found"
    for name in top - {"tinytracker/"}:
        assert _exists(name), f"README layout lists {name}: not found"


# ----------------------------------------------------------------------------- links and paths
def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", _prose(page.read_text()), re.M):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_every_relative_link_reaches_a_file_and_heading():
    checked = 0
    for page in [*PAGES, REPO / "sweeps" / "README.md"]:
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            assert dest.exists(), f"{_rel(page)} links to {target}: no such file"
            if anchor and dest.suffix == ".md":
                assert anchor in _anchors(dest), (
                    f"{_rel(page)} links to {target}: {dest.name} has no heading '#{anchor}' "
                    f"(it has {sorted(_anchors(dest))})")
            checked += 1
    assert checked >= 20, f"only {checked} relative links found: is the link pattern still right?"


def test_every_repository_path_in_a_code_span_exists():
    for page in PAGES:
        for span in re.findall(r"`([^`\s]+)`", _prose(page.read_text())):
            path = span.split("::")[0]
            if path.startswith(PATH_ROOTS) and not re.search(r"[<>*{}$]", path):
                assert _exists(path.rstrip("/")), f"{_rel(page)} names `{span}`: no such path"


# ----------------------------------------------------------------------------- command arguments
def _shell_commands() -> list[tuple[str, str, list[str]]]:
    """(page, module, arguments) of every ``python -m tinytracker.X`` in a ```bash block."""
    found = []
    for page in PAGES:
        for lang, body in FENCE.findall(page.read_text()):
            if lang != "bash":
                continue
            for line in body.replace("\\\n", " ").splitlines():
                line = re.sub(r"<[^<>\n]+>", "X", line)  # <run>, <file.ckpt>: placeholders
                tokens = shlex.split(line, comments=True)
                for i in range(len(tokens) - 2):
                    if tokens[i].endswith("python") and tokens[i + 1] == "-m" \
                            and tokens[i + 2].startswith("tinytracker"):
                        args = []
                        for tok in tokens[i + 3:]:
                            if tok in SHELL_OPERATORS:
                                break
                            args.append(tok)
                        found.append((_rel(page), tokens[i + 2], args))
    return found


def _config_dir() -> Path:
    return REPO / "tinytracker" / "conf"


def _hydra_config_name(source: str) -> str | None:
    match = re.search(r'@hydra\.main\([^)]*config_name="(\w+)"', source)
    return match.group(1) if match else None


def _first_of_sweeps(overrides: list[str]) -> list[str]:
    """One job of a ``-m`` command line: each comma-separated sweep at its first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for text, override in zip(overrides, parsed, strict=True):
        if override.is_sweep_override():
            first = next(override.sweep_string_iterator())
            text = f"{override.get_key_element()}={first}"
        out.append(text)
    return out


@pytest.mark.slow  # about 0.5 s a command on 2 cores
def test_every_hydra_command_in_the_docs_composes():
    from hydra import compose, initialize_config_dir

    from tinytracker.cli import experiment_alias

    commands = [c for c in _shell_commands()
                if _hydra_config_name(_module_file(c[1]).read_text())]
    assert len(commands) >= 30, f"only {len(commands)} Hydra commands found in the docs"
    with initialize_config_dir(config_dir=str(_config_dir()), version_base="1.3"):
        for page, module, args in commands:
            source = _module_file(module).read_text()
            overrides = [a for a in args if a not in ("-m", "--multirun", "--cfg", "job")]
            if "experiment_alias" in source:
                overrides = experiment_alias(overrides)
            try:
                compose(_hydra_config_name(source), overrides=_first_of_sweeps(overrides),
                        return_hydra_config=True)
            except Exception as err:  # Hydra raises several kinds; the message says which key
                pytest.fail(f"{page}: `python -m {module} {' '.join(args)}` does not compose: "
                            f"{type(err).__name__}: {err}")


def _argument_fields(module: str) -> set[str]:
    """The keys of the dataclass a command hands to ``cli.parse_args`` (and of its bases in the
    same file), read from the source: importing the commands would load torch."""
    source = _module_file(module).read_text()
    match = re.search(r"parse_args\((\w+)", source)
    assert match, f"{module} is neither a Hydra app nor parses key=value with cli.parse_args"
    tree = ast.parse(source)
    classes = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    # the dataclass may live in a module the command imports it from
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tinytracker"):
            spec = importlib.util.find_spec(node.module)
            imported = ast.parse(Path(spec.origin).read_text())
            classes |= {n.name: n for n in ast.walk(imported)
                        if isinstance(n, ast.ClassDef) and n.name not in classes}
    fields: set[str] = set()
    todo = [match.group(1)]
    while todo:
        cls = classes[todo.pop()]
        fields |= {s.target.id for s in cls.body
                   if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
        todo += [b.id for b in cls.bases if isinstance(b, ast.Name) and b.id in classes]
    return fields


def _check_argparse_args(page: str, module: str, args: list[str]) -> None:
    """A command with an argparse interface (the Pi program): its ``--options`` exist and the
    positional arguments are as many as it declares."""
    tree = ast.parse(_module_file(module).read_text())
    names = [c.args[0].value for c in ast.walk(tree)
             if isinstance(c, ast.Call) and getattr(c.func, "attr", "") == "add_argument"
             and c.args and isinstance(c.args[0], ast.Constant)]
    options = {n for n in names if n.startswith("-")} | {"--help", "-h"}
    positional = [n for n in names if not n.startswith("-")]
    given = [a for a in args if not a.startswith("-")]
    flags = [a.split("=", 1)[0] for a in args if a.startswith("-")]
    assert set(flags) <= options, f"{page}: `python -m {module}` has no {set(flags) - options}"
    assert len(given) <= len(positional), (
        f"{page}: `python -m {module}` takes {len(positional)} positional arguments "
        f"({positional}), got {given}")


def test_every_other_command_in_the_docs_takes_its_keys():
    commands = [c for c in _shell_commands()
                if not _hydra_config_name(_module_file(c[1]).read_text())]
    assert len(commands) >= 15, f"only {len(commands)} non-Hydra commands found in the docs"
    fields: dict[str, set[str]] = {}
    for page, module, args in commands:
        if "argparse.ArgumentParser" in _module_file(module).read_text():
            _check_argparse_args(page, module, args)
            continue
        keys = fields.setdefault(module, _argument_fields(module))
        for arg in args:
            if arg in ("--help", "-h"):
                continue
            key = arg.split("=", 1)[0]
            assert "=" in arg and key in keys, (
                f"{page}: `python -m {module}` takes key=value with keys {sorted(keys)}, "
                f"not {arg!r}")


# ----------------------------------------------------------------------------- marked blocks
def _marked_pages() -> list[Path]:
    return [p for p in PAGES if MARKED.search(p.read_text())]


def test_quick_commands_are_marked():
    pages = {p.name for p in _marked_pages()}
    assert {"training.md", "data.md", "sweeps.md"} <= pages, f"marked blocks only in {pages}"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", _marked_pages(), ids=lambda p: p.name)
def test_marked_blocks_run(page: Path, tmp_path: Path, cache_dir: Path):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "TINYTRACKER_CACHE_DIR": str(cache_dir), "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for block in MARKED.findall(page.read_text()):
        proc = subprocess.run(["bash", "-eo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
        assert proc.returncode == 0, (
            f"{_rel(page)}: this block exited {proc.returncode}:\n{block}\n"
            f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-5000:]}")

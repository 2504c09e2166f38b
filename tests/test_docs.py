"""The documentation: the site builds strictly, and what the pages tell users to do works.

- ``mkdocs build --strict`` (mkdocs.yml): a broken link or anchor, a page missing from the
  nav, or an API name the reference pages no longer find fails here.
- The shell-completion line of docs/cli.md, loaded into a real bash, completes commands.
- The tutorials' files (code blocks with ``title="NAME.py"``) run, in fresh processes, with the
  outcomes the tutorials print.
- The home page's example prints what its comments say, and its shell lines work as written.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["NO_MKDOCS_2_WARNING"] = "1"
    env.update(extra)
    return env


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    reference = (tmp_path / "site" / "reference" / "workflow" / "index.html").read_text()
    assert "execute" in reference and "params" in reference  # generated from the docstrings
    for page in ("tutorials/data-science", "tutorials/training", "tutorials/team-cache"):
        assert (tmp_path / "site" / page / "index.html").is_file()
    assert "redun" in (tmp_path / "site" / "comparison" / "index.html").read_text()


# -- shell completion --------------------------------------------------------------------------
def _completion_line(shell: str) -> str:
    text = (DOCS / "cli.md").read_text()
    [line] = [ln.strip() for ln in text.splitlines() if f"COMPLETE={shell}_source" in ln]
    return line


def _bash_complete(words: list[str]) -> list[str]:
    script = "\n".join(
        [
            _completion_line("bash"),
            "COMPREPLY=()",
            f"COMP_WORDS=({' '.join(repr(w) for w in words)})",
            f"COMP_CWORD={len(words) - 1}",
            "_etherealfabric_completion etherealfabric",
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    out = subprocess.run(
        ["bash", "-c", script], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_as_documented_completes_commands_and_options() -> None:
    assert (BIN / "etherealfabric").exists()
    assert _bash_complete(["etherealfabric", "ca"]) == ["cache", "cat"]
    assert {"forget", "gc", "verify"} <= set(_bash_complete(["etherealfabric", "cache", ""]))
    assert {"--param", "--params"} <= set(_bash_complete(["etherealfabric", "run", "--par"]))
    asked = subprocess.run(  # a workflow file: bash is told to complete file names
        [str(BIN / "etherealfabric")],
        env=_env(
            _ETHEREALFABRIC_COMPLETE="bash_complete",
            COMP_WORDS="etherealfabric run ",
            COMP_CWORD="2",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert asked.stdout.split() == ["file,"], asked.stdout + asked.stderr


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion_scripts_as_documented(shell: str) -> None:
    line = _completion_line(shell)
    assert f"_ETHEREALFABRIC_COMPLETE={shell}_source etherealfabric" in line
    out = subprocess.run(
        [str(BIN / "etherealfabric")],
        env=_env(_ETHEREALFABRIC_COMPLETE=f"{shell}_source"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "_etherealfabric_completion" in out.stdout
    if shutil.which(shell):  # a syntax check where the shell is installed
        check = subprocess.run(
            [shell, "-n"], input=out.stdout, capture_output=True, text=True, timeout=60
        )
        assert check.returncode == 0, check.stderr


# -- the tutorials -----------------------------------------------------------------------------
def _files(page: str, into: Path) -> None:
    """Write the code blocks with ``title="NAME"`` of a docs page into ``into``."""
    text = (DOCS / page).read_text()
    blocks = re.findall(r'```python title="([^"]+)"\n(.*?)```', text, flags=re.S)
    assert blocks, f"{page} has no titled code blocks"
    for name, code in blocks:
        (into / name).write_text(code)


def _cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=root,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _run(root: Path, *args: str, **env: str) -> dict[str, Any]:
    out = _cli(root, "run", *args, "--json", **env)
    assert out.returncode == 0, out.stderr
    summary: dict[str, Any] = json.loads(out.stdout)
    return summary


def _executed(summary: dict[str, Any]) -> set[str]:
    return {n for n, s in summary["nodes"].items() if s == "succeeded"}


def test_tutorial_incremental_data_science(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    _files("tutorials/data-science.md", tmp_path)
    subprocess.run([sys.executable, "make_data.py"], cwd=tmp_path, check=True, timeout=120)
    flow = tmp_path / "houses.py"
    assert len(_executed(_run(tmp_path, "houses.py"))) == 5
    assert _run(tmp_path, "houses.py")["cached"] == 5

    source = flow.read_text()
    cosmetic = source.replace(
        "def features(data):\n", 'def features(data):\n    """Model inputs."""  # a comment\n'
    )
    flow.write_text(cosmetic)
    assert _run(tmp_path, "houses.py")["executed"] == 0

    edit = '    X["old"] = (X["age"] > 50).astype(float)\n'
    flow.write_text(cosmetic.replace("    return X, data", edit + "    return X, data"))
    changed = _run(tmp_path, "houses.py")
    assert _executed(changed) == {"features", "fit", "evaluate"}
    why = _cli(tmp_path, "explain", changed["run_id"], "features")
    assert "code: houses.features changed" in why.stdout, why.stdout

    ridge = _run(tmp_path, "houses.py", "-p", "model.ridge=10")
    assert _executed(ridge) == {"fit", "evaluate"}
    why = _cli(tmp_path, "explain", ridge["run_id"], "fit")
    assert "param model.ridge: 1.0 → 10.0" in why.stdout, why.stdout
    assert _run(tmp_path, "houses.py")["executed"] == 0  # back to ridge=1: still cached
    score = _cli(tmp_path, "cat", ridge["run_id"], "evaluate")
    assert "'rows': 4950" in score.stdout, score.stdout


def test_tutorial_resuming_training(tmp_path: Path) -> None:
    _files("tutorials/training.md", tmp_path)
    crashed = _cli(tmp_path, "run", "train.py", CRASH_AT="8")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert "epoch 8/20 done" in crashed.stdout + crashed.stderr
    [run] = json.loads(_cli(tmp_path, "runs", "--json").stdout)
    assert run["status"] == "interrupted"
    resumed = _cli(tmp_path, "resume", run["id"], "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    # make_data runs again only if the kill came within its group commit window (documented:
    # the page says a node killed before its output was committed may run again)
    with sqlite3.connect(tmp_path / ".etherealfabric" / "journal.db") as conn:
        committed = conn.execute(
            "SELECT COUNT(*) FROM node_runs WHERE run_id=? AND node='make_data' "
            "AND status='succeeded'",
            (run["id"],),
        ).fetchone()[0]
    assert (summary["executed"], summary["cached"]) == ((2, 1) if committed else (3, 0))
    logs = _cli(tmp_path, "logs", summary["run_id"], "train").stdout
    assert "resuming at epoch 8" in logs and "epoch 1/20" not in logs


def test_tutorial_sharing_a_team_cache(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    alice, bob = tmp_path / "alice" / "repo", tmp_path / "bob" / "work" / "repo"
    for clone in (alice, bob):
        clone.mkdir(parents=True)
        _files("tutorials/data-science.md", clone)
    subprocess.run([sys.executable, "make_data.py"], cwd=alice, check=True, timeout=120)
    shutil.copy(alice / "houses.csv", bob / "houses.csv")
    team = {
        "ETHEREALFABRIC_STORE": str(tmp_path / "shared"),
        "ETHEREALFABRIC_SIGNING_KEY": "team-key-0123456789abcdef",
    }
    assert _run(alice, "houses.py", **team)["executed"] == 5
    assert _run(bob, "houses.py", **team)["executed"] == 0  # an empty journal, all hits
    assert _executed(_run(bob, "houses.py", "-p", "model.ridge=3", **team)) == {"fit", "evaluate"}
    assert _run(alice, "houses.py", "-p", "model.ridge=3", **team)["executed"] == 0


def test_home_page_and_parameters_page_examples(tmp_path: Path) -> None:
    text = (DOCS / "index.md").read_text()
    (tmp_path / "squares.py").write_text(re.findall(r"```python\n(.*?)```", text, re.S)[0])
    assert _run(tmp_path, "squares.py")["executed"] == 3
    assert _run(tmp_path, "squares.py")["executed"] == 0
    assert _run(tmp_path, "squares.py", "-p", "n=10")["executed"] == 3

    text = (DOCS / "parameters.md").read_text()
    (tmp_path / "train.py").write_text(re.findall(r"```python\n(.*?)```", text, re.S)[0])
    assert _run(tmp_path, "train.py")["executed"] == 3
    assert _executed(_run(tmp_path, "train.py", "-p", "model.C=0.5")) == {"fit", "Report"}


def test_home_page_script_prints_what_its_comments_say(tmp_path: Path) -> None:
    """docs/index.md's example as a script (`python squares.py`), twice: the values printed
    are those in its comments (`# 332833500`, `# 3 0   (run it again: 0 3)`)."""
    text = (DOCS / "index.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    (tmp_path / "squares.py").write_text(code)
    said = re.findall(r"print\(.*?\)\s*# (\S+(?: \d+)?)", code)
    again = re.search(r"run it again: ([\d ]+)\)", code)
    assert said and again, code
    for expected in (said, [said[0], again.group(1).strip()]):
        out = subprocess.run(
            [sys.executable, "squares.py"], cwd=tmp_path, env=_env(), capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == expected


def test_home_page_shell_lines_work_as_written(tmp_path: Path) -> None:
    """docs/index.md's shell block, each `etherealfabric` line run as written by a real shell
    with the installed command (RUN_ID: the newest run), and what its comment says checked."""
    text = (DOCS / "index.md").read_text()
    (tmp_path / "squares.py").write_text(re.findall(r"```python\n(.*?)```", text, re.S)[0])
    [block] = re.findall(r"```sh\n(.*?)```", text, re.S)
    lines = [ln.partition("#") for ln in block.splitlines() if ln.startswith("etherealfabric ")]
    assert len(lines) >= 5, block
    checked = 0
    for command, _, comment in lines:
        if "RUN_ID" in command:
            newest = json.loads(_cli(tmp_path, "runs", "--json").stdout)[0]["id"]
            command = command.replace("RUN_ID", newest)
        out = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=_env(), capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, (command, out.stderr)
        counts = re.match(r"\s*(\d+) executed(?:, (\d+) cached)?", comment)
        if counts:  # "3 executed", "0 executed, 3 cached"
            assert f"{counts.group(1)} executed" in out.stdout, (command, out.stdout)
            if counts.group(2):
                assert f"{counts.group(2)} cached" in out.stdout, (command, out.stdout)
            checked += 1
        elif "re-runs" in comment:  # -p n=10: every node reads n or what n changes
            assert "3 executed, 0 cached" in out.stdout, (command, out.stdout)
            checked += 1
        elif "history" in comment:
            assert out.stdout.count("squares") == 3 and "executed" in out.stdout, out.stdout
            checked += 1
        elif "why it ran: " in comment:
            assert comment.split("why it ran: ")[1].strip() in out.stdout, (command, out.stdout)
            checked += 1
    assert checked == len(lines)


def test_every_error_is_importable_from_the_package_as_the_api_page_says() -> None:
    """docs/api.md: the top-level package offers "the errors": every one a user may catch."""
    import inspect

    import etherealfabric
    from etherealfabric import errors

    public = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, (Exception, Warning))
        and obj.__module__ == errors.__name__
        and not name.startswith("_")
    }
    assert {"UnknownOptionError", "RunNotFoundError", "HashingError"} <= public
    missing = sorted(n for n in public if getattr(etherealfabric, n, None) is not vars(errors)[n])
    assert missing == []
    assert public <= set(etherealfabric.__all__)


# -- the command line's reference --------------------------------------------------------------
def _commands() -> list[tuple[str, Any]]:
    """Every command of the parser with its path (``"cache ls"``), groups included."""
    from test_cli import _every_command

    return list(_every_command())


def _sections(text: str) -> tuple[str, dict[str, str]]:
    """docs/cli.md as its introduction and its ``## `etherealfabric COMMAND ...` `` sections."""
    intro, *chunks = re.split(r"^## ", text, flags=re.M)
    sections: dict[str, str] = {}
    for chunk in chunks:
        head = re.match(r"`etherealfabric ([^`]*)`", chunk)
        words = list(
            itertools.takewhile(
                re.compile(r"[a-z][a-z-]*$").match, (head or [""])[1].split() if head else []
            )
        )
        if words:
            sections[" ".join(words)] = chunk
        else:  # (exit codes, shell completion: about every command)
            intro += chunk
    return intro, sections


def test_every_command_and_option_of_the_parser_is_in_the_cli_page() -> None:
    """Each subcommand has its section in docs/cli.md (``ui``: docs/ui.md), and each spelling of
    each of its options (``-w`` and ``--workflow``) is in that section, or in the introduction
    for those every command shares (``--home``, ``--json``); each option a section's table or
    synopsis gives exists. The two once drifted: options the page did not list, one it listed
    that the command did not parse (``celery-worker --broker-url``, then passed through)."""
    import click

    intro, sections = _sections((DOCS / "cli.md").read_text())
    sections["ui"] = (DOCS / "ui.md").read_text()
    missing: list[str] = []
    invented: list[str] = []
    for path, command in _commands():
        if isinstance(command, click.Group) and path:
            assert any(name.startswith(f"{path} ") for name in sections), path  # its commands
            continue
        text = intro if not path else sections.get(path)
        if text is None:
            missing.append(f"{path}: no section")
            continue
        spellings = {
            spelling
            for param in command.params
            if isinstance(param, click.Option)
            for spelling in (*param.opts, *param.secondary_opts)
        } - {"-h", "--help"}
        for spelling in sorted(spellings):
            said = re.compile(rf"(?<![\w-]){re.escape(spelling)}(?![\w-])")
            if not (said.search(text) or said.search(intro)):
                missing.append(f"{path or 'etherealfabric'} {spelling}")
        if path and path != "ui":
            claimed = [  # the option tables' first cells, the head and synopsis lines
                line.split("|")[1] if line.startswith("|") else line
                for line in text.splitlines()
                if line.startswith(("| `-", f"`etherealfabric {path}"))
            ]
            for cell in claimed:
                for spelling in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", cell):
                    if spelling not in spellings | {"-h", "--help"}:
                        invented.append(f"{path} {spelling}")
    assert missing == [], missing
    assert sorted(set(invented)) == [], invented

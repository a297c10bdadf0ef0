"""The README's snippets run as written: the Python API end to end, and every spml command line of the README and
of the docs pages parses with the real commands in today's spelling (no option unknown, no deprecated one)."""

import re
import shlex
from importlib import import_module
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# the pages whose command lines are concrete (the sweep and demo reports use shell variables)
PAGES = [README] + [ROOT / "docs" / f"{name}.md" for name in
                    ("index", "cli", "training", "losses", "labels", "scaling", "results", "benchmarks")]


def section(text: str, heading: str) -> str:
    assert f"\n## {heading}\n" in text, f"no section {heading!r}"
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_python_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", section(README.read_text(), "Python API"), re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme"})

    def number(line):
        try:
            return float(line)
        except ValueError:
            return None

    printed = [number(line) for line in capsys.readouterr().out.splitlines()]
    f1, test_map = [v for v in printed if v is not None]  # the snippet's two prints, between train()'s log lines
    assert 0 <= f1 <= 1 and 0 <= test_map <= 100
    assert {"teacher.pt", "teacher.onnx", "labels.json", "student.pt"} <= {p.name for p in tmp_path.iterdir()}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of each fenced block, fences paired in order (a closing fence opens nothing)."""
    blocks, body, info = [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            if body is None:
                body, info = [], line[3:].strip()
            else:
                blocks.append((info, "\n".join(body)))
                body = None
        elif body is not None:
            body.append(line)
    return blocks


def command_lines(page: Path) -> list[list[str]]:
    """Each `spml-*` command of the page's shell blocks, as argv: comments dropped, `\\` continuations joined,
    `&&` chains split, a trailing `...` ("your usual options") dropped."""
    commands = []
    for info, block in fenced_blocks(page.read_text()):
        if info not in ("", "sh", "bash"):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                argv = shlex.split(part, comments=True)
                if argv and argv[-1] == "...":
                    argv = argv[:-1]
                if argv and argv[0].startswith("spml-"):
                    commands.append(argv)
    return commands


def parse(argv: list[str]) -> click.Context:
    """click parses argv with the installed command (options, types, choices) without running it."""
    scripts = dict(re.findall(r'^(spml-[a-z]+) = "([\w.:]+)"$', (ROOT / "pyproject.toml").read_text(), re.M))
    module, _, attr = scripts[argv[0]].partition(":")
    command = getattr(import_module(module), attr)
    args = argv[1:]
    if isinstance(command, click.Group) and args and args[0] in command.commands:
        command, args = command.commands[args[0]], args[1:]
    return command.make_context(argv[0], args)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name if p == README else f"docs/{p.name}")
def test_every_command_line_parses_in_todays_spelling(page, capsys):
    commands = command_lines(page)
    assert commands, f"no spml command line in {page}"
    problems = []
    for argv in commands:
        try:
            parse(argv)
        except click.ClickException as e:
            problems.append(f"{shlex.join(argv)}\n    {e.format_message()}")
        deprecations = [line for line in capsys.readouterr().err.splitlines() if line.startswith("deprecated:")]
        if deprecations:
            problems.append(f"{shlex.join(argv)}\n    uses an old spelling: {deprecations}")
    assert not problems, f"{page.name}:\n" + "\n".join(problems)

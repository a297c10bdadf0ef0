"""The README's Python API snippet runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_python_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
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

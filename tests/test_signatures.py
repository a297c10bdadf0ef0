"""Calls stay readable: a function takes at most four positional parameters, the rest by keyword only
(`def write_labels(out, dataset, scores, tau, *, model_path, ...)`). The one exception is a torch module's
`forward`, which torch calls positionally through `module(...)`; its extra settings are keyword-only too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "spml"
MAX_POSITIONAL = 4
EXEMPT = {"forward": 5}  # logits, targets, known, rows, epoch: the stateful losses' call from the training step


def positional(node: ast.FunctionDef) -> list[str]:
    params = [a.arg for a in node.args.posonlyargs + node.args.args]
    return params[1:] if params and params[0] in ("self", "cls", "ctx") else params


def test_no_function_takes_more_than_four_positional_parameters():
    wide = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = positional(node)
                if len(names) > EXEMPT.get(node.name, MAX_POSITIONAL):
                    wide.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}({', '.join(names)})")
    assert not wide, "more than four positional parameters (make the rest keyword-only):\n  " + "\n  ".join(wide)


def test_the_check_sees_a_wide_signature():
    node = ast.parse("def f(self, a, b, c, d, e, *, g=1): pass").body[0]
    assert positional(node) == ["a", "b", "c", "d", "e"]

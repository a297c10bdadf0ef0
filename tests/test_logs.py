"""The library's notes go through logging (spml.logs), shown by the commands on stdout on rank 0 only; no print in
the library to bypass that."""

import ast
from pathlib import Path

import pytest

import spml
from spml.logs import configure


@pytest.fixture
def partial_weights(tmp_path):
    """cnn4's weights without its first tensor (not the head): loading them leaves one tensor as initialised."""
    import torch

    from spml.train.small_cnn import small_cnn

    state = small_cnn("cnn4", 1000).state_dict()
    first = next(iter(state))
    del state[first]
    torch.save(state, tmp_path / "w.pt")
    return tmp_path / "w.pt"


def test_the_missing_tensors_note_is_logged_on_rank_0(partial_weights, capsys, monkeypatch):
    from spml.train.model import create_model

    monkeypatch.delenv("RANK", raising=False)
    configure()
    create_model("cnn4", 3, weights=partial_weights)
    assert capsys.readouterr().out.splitlines() == [
        f"note: 1 tensors of cnn4 were not in {partial_weights} and keep their initial values"]


def test_other_ranks_are_silent(partial_weights, capsys, monkeypatch):
    from spml.train.model import create_model

    monkeypatch.setenv("RANK", "1")
    configure()
    configure()  # idempotent: one handler, not two
    create_model("cnn4", 3, weights=partial_weights)
    assert capsys.readouterr().out == ""
    monkeypatch.delenv("RANK")
    configure()


# (file, function) -> why print is right there
PRINTS = {
    ("spml/progress.py", "_print"): "a progress line, on the stream the bar was given",
    ("spml/label/api.py", "_stderr"): "the default `log` sink of label(), a callback every caller can replace "
                                      "(as the `log=print` defaults of train() and run_sweep())",
}


def _prints(tree: ast.AST, function: str | None = None):
    """(innermost enclosing function, line) of each print() call."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            yield function, node.lineno
        inner = node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
        yield from _prints(node, inner)


def test_no_print_in_the_library():
    """Everything but the table above logs (or takes a `log` callback)."""
    root = Path(spml.__file__).parent
    found = [f"{rel}:{line} in {function}" for path in sorted(root.rglob("*.py"))
             for rel in [str(path.relative_to(root.parent))]
             for function, line in _prints(ast.parse(path.read_text())) if (rel, function) not in PRINTS]
    assert not found, f"print() in the library (use logging.getLogger(__name__)): {found}"

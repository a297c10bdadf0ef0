"""The package's layering, as rules over its import graph (built with `ast` from spml/**/*.py, imports inside
functions counted too, since a lazy import is still a dependency):

- no import cycles between files;
- the stages are layered: data <- train, export, label, eval, review <- sweep, all over the shared top-level
  modules;
  the few edges between stages that the work itself needs are written down, each with its reason (ALLOWED);
- no file imports another file's private (_underscored) names;
- spml.label never imports torch (statically, and in a fresh interpreter).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import spml

ROOT = Path(spml.__file__).parent
STAGES = ("data", "train", "export", "label", "eval", "review", "sweep")
TORCH = {"torch", "torchvision", "timm"}

# What each layer may import besides itself: a layer ("shared", "data", a stage) or one module of a stage, with the
# reason. "shared" is spml's top-level modules (errors, files, progress, cli_util, logs) and spml/__init__. An edge
# not in this table is a layering break.
ALLOWED = {
    ("data", "shared"): "errors, atomic files, progress, the CLI boundary: what every layer uses",
    **{(stage, layer): "the layers below" for stage in ("train", "export", "label", "eval", "review")
       for layer in ("shared", "data")},  # review: questions and answers over labels files, which are data
    **{("sweep", layer): "the sweep orchestrates every stage through its library API"
       for layer in ("shared", "data", "train", "export", "label", "eval", "review")},
    # The exceptions. Each is a dependency of the work itself, not of convenience:
    ("export", "spml.train.model"):
        "the exporter traces the torch module a checkpoint describes; rebuilding it (arch, head, weights) is the "
        "model code's job, and a second copy would drift from what was trained",
    ("export", "spml.train.zero_shot"):
        "spml-export --zero-shot writes a teacher no training made: its image tower and zero-shot head are built, and "
        "calibrated with the teacher loss, by the train stage's model and loss code, as a trained teacher's are",
    ("eval", "spml.train.model"):
        "evaluating a .pt model runs the torch module its checkpoint describes, built as the exporter builds it",
    ("eval", "spml.label.labeler"):
        "an .onnx model is scored by the labeler's onnxruntime session, so spml-eval's mAP is of exactly the "
        "probabilities spml-label thresholds (same preprocessing, same providers)",
    ("review", "spml.label.api"):
        "spml-review select --model scores the images through the labeler's library call (torch-free), so the "
        "questions are chosen from exactly the probabilities spml-label --soft writes",
    ("review", "spml.label.labeler"):
        "spml-review calibrate writes its calibrated labels through spml-label's own writer (label_scores), which "
        "takes the probabilities as the labeler's Scores: one writer for every labels file, not a second one",
    ("train", "spml.eval.metrics"):
        "the trainer keeps the epoch with the best validation mAP: the same function spml-eval reports, so the "
        "number the checkpoint was chosen by is the number the user is shown (numpy only; no stage code)",
}


@dataclass
class Module:
    name: str  # spml.data.coco
    path: Path
    imports: dict[str, int] = field(default_factory=dict)  # spml module -> first line importing it
    external: dict[str, int] = field(default_factory=dict)  # top-level package -> first line
    private: list[tuple[int, str, str]] = field(default_factory=list)  # (line, module, name)

    @property
    def rel(self) -> str:
        return str(self.path.relative_to(ROOT.parent))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in STAGES) else "shared"


def _resolve(name: str, known: set[str]) -> str | None:
    """The spml module that `import name` loads as its last step: the longest known prefix."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def build_graph() -> dict[str, Module]:
    files = sorted(ROOT.rglob("*.py"))
    modules = {module_name(p): Module(module_name(p), p) for p in files}
    known = set(modules)
    for mod in modules.values():
        tree = ast.parse(mod.path.read_text(), str(mod.path))
        is_package = mod.path.name == "__init__.py"

        def add(target: str, line: int):
            top = target.split(".")[0]
            if top != "spml":
                mod.external.setdefault(top, line)
                return
            found = _resolve(target, known)
            if found and found != mod.name:
                mod.imports.setdefault(found, line)

        uses_import_module = False
        for node in ast.walk(tree):  # every import, at the top or inside a function
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, mod.name, is_package)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in known:  # `from spml.eval import metrics`: the module itself
                        add(full, node.lineno)
                    else:
                        add(base, node.lineno)
                        if alias.name.startswith("_") and base.startswith("spml") and base != mod.name:
                            mod.private.append((node.lineno, base, alias.name))
            elif isinstance(node, ast.Attribute) and node.attr == "import_module":
                uses_import_module = True
        if uses_import_module:  # importlib.import_module("spml.x.y"): a module named by a string in this file
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known:
                    add(node.value, node.lineno)
    return modules


def find_cycles(modules: dict[str, Module]) -> list[list[str]]:
    """One cycle (a list of modules, the first repeated at the end) per strongly connected component (Tarjan)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in modules[v].imports:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(modules):
        if v not in index:
            connect(v)
    return [_cycle_through(min(c), c, modules) for c in components]


def _cycle_through(start: str, component: set[str], modules: dict[str, Module]) -> list[str]:
    """The shortest path start -> ... -> start inside the component (breadth first)."""
    parent, frontier = {start: None}, [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(modules[v].imports):
                if w == start:
                    path = [v]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w in component and w not in parent:
                    parent[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def describe_cycle(cycle: list[str], modules: dict[str, Module]) -> str:
    steps = [f"{modules[a].rel}:{modules[a].imports[b]} imports {b}" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(modules[m].rel for m in cycle) + "\n      " + "\n      ".join(steps)


def allowed(importer: str, target: str) -> bool:
    source, dest = layer(importer), layer(target)
    if source == dest:
        return True
    return any(key[0] == source and (key[1] == dest or target == key[1] or target.startswith(key[1] + "."))
               for key in ALLOWED)


def layering_breaks(modules: dict[str, Module]) -> list[str]:
    return [f"{mod.rel}:{line} imports {target} ({layer(mod.name)} -> {layer(target)})"
            for mod in modules.values() for target, line in sorted(mod.imports.items())
            if not allowed(mod.name, target)]


# The graph's builder, on a made-up package: a test of the test, so a pass above means the rules were checked.
def test_the_graph_sees_function_local_imports_and_cycles(tmp_path, monkeypatch):
    pkg = tmp_path / "spml"
    (pkg / "data").mkdir(parents=True)
    (pkg / "train").mkdir()
    for init in (pkg, pkg / "data", pkg / "train"):
        (init / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("def f():\n    from spml.train.b import g\n")
    (pkg / "train" / "b.py").write_text("from spml.data import a\nfrom spml.data.a import _private\n")
    (pkg / "errors.py").write_text("import importlib\nimportlib.import_module('spml.data.a')\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    modules = build_graph()
    assert modules["spml.data.a"].imports == {"spml.train.b": 2}
    assert modules["spml.train.b"].imports == {"spml.data.a": 1}
    assert modules["spml.train.b"].private == [(2, "spml.data.a", "_private")]
    assert modules["spml.errors"].imports == {"spml.data.a": 2}
    assert find_cycles(modules) == [["spml.data.a", "spml.train.b", "spml.data.a"]]
    assert layering_breaks(modules) == ["spml/data/a.py:2 imports spml.train.b (data -> train)",
                                        "spml/errors.py:2 imports spml.data.a (shared -> data)"]


def test_every_package_is_a_stage_the_rules_know():
    """A new package under spml/ is placed in the layers on purpose (STAGES and ALLOWED), not by default."""
    packages = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    assert set(packages) <= set(STAGES), f"add {sorted(set(packages) - set(STAGES))} to STAGES and ALLOWED"


def test_no_import_cycles_between_files():
    modules = build_graph()
    cycles = find_cycles(modules)
    assert not cycles, "import cycles:\n  " + "\n  ".join(describe_cycle(c, modules) for c in cycles)


def test_data_imports_no_stage():
    modules = build_graph()
    found = [f"{m.rel}:{line} imports {t}" for m in modules.values() if layer(m.name) == "data"
             for t, line in m.imports.items() if layer(t) in STAGES and layer(t) != "data"]
    assert not found, "spml/data must import no other stage:\n  " + "\n  ".join(found)


def test_stages_import_only_the_layers_below_and_the_named_exceptions():
    breaks = layering_breaks(build_graph())
    assert not breaks, "imports the layering does not allow (see ALLOWED):\n  " + "\n  ".join(breaks)


def test_every_exception_is_still_used():
    """An exception that no import needs any more is a hole in the rules: remove it from ALLOWED."""
    modules = build_graph()
    edges = {(layer(m.name), t) for m in modules.values() for t in m.imports}
    unused = [key for key in ALLOWED if "." in key[1]
              and not any(s == key[0] and (t == key[1] or t.startswith(key[1] + ".")) for s, t in edges)]
    assert not unused, f"exceptions in ALLOWED that no import uses: {unused}"


def test_no_file_imports_another_files_private_names():
    found = [f"{m.rel}:{line} imports {name} from {base}" for m in build_graph().values()
             for line, base, name in m.private]
    assert not found, "private names used across files (make them public API):\n  " + "\n  ".join(found)


def test_label_never_imports_torch_statically():
    modules = build_graph()
    reached, todo = set(), [m for m in modules if layer(m) == "label"]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += modules[name].imports
    found = [f"{modules[m].rel}:{line} imports {ext}" for m in sorted(reached)
             for ext, line in modules[m].external.items() if ext in TORCH]
    assert not found, "spml.label reaches torch through:\n  " + "\n  ".join(found)


def test_label_never_imports_torch_when_run():
    code = ("import importlib, pkgutil, sys, spml.label, spml.label.cli\n"
            "for m in pkgutil.iter_modules(spml.label.__path__):\n"
            "    importlib.import_module('spml.label.' + m.name)\n"
            "loaded = sorted(n for n in sys.modules if n.split('.')[0] in {'torch', 'torchvision', 'timm'})\n"
            "assert not loaded, loaded\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]

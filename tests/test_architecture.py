"""The layering, read from the source with ``ast``: every import (lazy ones inside functions included).

``config → data → models → attacks → experiment → defense → train → sweep | tracking → report → cli``: a module
may import its own package and the floors below it, never a floor above. ``sweep`` and ``tracking`` sit side by
side: tracking receives plain data and never imports sweep; sweep uses tracking only through the package's
public names (``none_sweep.tracking``) and its layout declaration, never its internals. The shared bottom (``errors``, ``registry``, ``text``)
imports nothing of ours above it. And no two modules import each other, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "none_sweep"
LAYERS = ["config", "data", "models", "attacks", "experiment", "defense", "train", "sweep", "tracking", "report",
          "cli"]  # fmt: skip
RANK = {name: i for i, name in enumerate(LAYERS)}
RANK["tracking"] = RANK["sweep"]  # siblings
RANK["__main__"] = len(LAYERS)  # ``python -m none_sweep`` runs the CLI
BOTTOM = {"errors", "registry", "text", "__init__"}
MAX_CODE_LINES = 400
TRACKING_PUBLIC = {"none_sweep.tracking", "none_sweep.tracking.layout"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path) -> set[str]:
    """Every ``none_sweep`` module that ``path`` imports, as absolute dotted names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "none_sweep")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "none_sweep":
                continue
            out.add(target)
            for alias in node.names:  # ``from . import space`` imports the submodule none_sweep.sweep.space
                candidate = f"{target}.{alias.name}"
                if (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                    PACKAGE.parent / Path(*candidate.split(".")) / "__init__.py"
                ).exists():
                    out.add(candidate)
    return out


def floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


SOURCES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {module_name(p): imported(p) for p in SOURCES}


def test_every_floor_is_known() -> None:
    unknown = sorted({floor(m) for m in GRAPH} - set(RANK) - BOTTOM)
    assert not unknown, f"packages outside the layering {LAYERS}: {unknown}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_no_import_goes_up(path: Path) -> None:
    me = module_name(path)
    mine = floor(me)
    bad = []
    for target in sorted(GRAPH[me]):
        theirs = floor(target)
        if theirs == mine or (theirs in BOTTOM and target != "none_sweep"):
            continue
        if mine in BOTTOM and mine != "__init__":
            bad.append(target)  # the shared bottom imports nothing of ours
        elif mine == "tracking" and theirs == "sweep":
            bad.append(target)
        elif mine == "sweep" and theirs == "tracking" and target not in TRACKING_PUBLIC:
            bad.append(target)  # only the package's public names and its layout declaration
        elif mine in RANK and theirs in RANK and RANK[theirs] > RANK[mine]:
            bad.append(target)
    assert not bad, f"{me} ({mine}) imports from a floor above it or a sibling's internals: {bad}"


def test_no_import_cycles() -> None:
    modules = set(GRAPH)

    def edges(m: str) -> set[str]:
        # importing a.b.c runs a and a.b first: a package's __init__ counts as imported too
        return {t for t in GRAPH[m] if t in modules and t != m}

    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges(m)):
            if state.get(t) == 1:
                if not (m.startswith(t + ".") or t == "none_sweep"):  # a package re-exporting its own modules
                    cycles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c) for c in cycles)


def code_lines(path: Path) -> int:
    """Lines that are neither blank, nor comments, nor docstrings."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                doc_lines.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    return sum(
        1
        for i, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#") and i not in doc_lines
    )


def test_modules_stay_small() -> None:
    big = {module_name(p): n for p in SOURCES if (n := code_lines(p)) > MAX_CODE_LINES}
    runner = PACKAGE / "sweep" / "runner.py"
    if runner.exists() and code_lines(runner) > 300:
        big["none_sweep.sweep.runner (limit 300)"] = code_lines(runner)
    assert not big, f"modules over {MAX_CODE_LINES} code lines: {big}"


def test_no_private_attributes_of_other_objects() -> None:
    """Public APIs only: ``x._private`` is read only on ``self``/``cls``, never on what Ray, Optuna or MLflow hand
    us (nor on our own objects from outside their class)."""
    # names that are private by spelling only: argparse's documented sub-parser type and torch's common
    # base class of every batch-norm layer
    allowed = {("os", "_exit"), (None, "_SubParsersAction"), (None, "_BatchNorm")}
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
                continue
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner in ("self", "cls") or (owner, node.attr) in allowed or (None, node.attr) in allowed:
                continue
            found.append(f"{module_name(path)}:{node.lineno} {ast.unparse(node)}")
    assert not found, f"private attributes read from outside their class: {found}"


def test_no_private_ray_or_optuna_internals_through_subclassing() -> None:
    """A subclass reading its library base's private state (``self._ot_study``) is private API too."""
    internals = ("_ot_study", "_ot_trials", "_trial_id", "_study_name", "_completed_trials", "_points_to_evaluate")
    found = [
        f"{module_name(path)}: {name}"
        for path in SOURCES
        for name in internals
        if f".{name}" in path.read_text(encoding="utf-8")
    ]
    assert not found, f"Ray/Optuna internals: {found}"

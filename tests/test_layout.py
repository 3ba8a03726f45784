"""The house stays easy to change: small functions with few parameters, a scheduler that only
schedules, phases that never reach into it, modules of a readable size (the sizes
docs/backends.md states). Measured on the source, so it holds on any machine."""

import ast

from tests.conftest import ROOT

MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 7  # self and cls not counted
MAX_RUNNER_LINES = 150
MAX_MODULE_LINES = 400
PHASE_MODULES = ("phases.py", "serve_phase.py", "tta_phase.py", "cells.py", "timing_workers.py", "profile_phase.py",
                 "serve_worker.py", "fresh.py")


def _sources():
    for package in ("bench", "reports", "models"):
        yield from sorted((ROOT / package).rglob("*.py"))


def _functions(tree):
    return (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _parameters(node) -> int:
    a = node.args
    names = [p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]] + [p.arg for p in (a.vararg, a.kwarg) if p]
    return len([n for n in names if n not in ("self", "cls")])


def test_no_function_over_60_lines_or_7_parameters_and_no_module_over_400_lines():
    problems = []
    for path in _sources():
        text, where = path.read_text(), path.relative_to(ROOT)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            problems.append(f"{where}: {len(text.splitlines())} lines")
        for node in _functions(ast.parse(text)):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                problems.append(f"{where}:{node.lineno} {node.name}: {lines} lines")
            if _parameters(node) > MAX_PARAMETERS:
                problems.append(f"{where}:{node.lineno} {node.name}: {_parameters(node)} parameters")
    assert not problems, problems


def test_the_runner_only_schedules():
    tree = ast.parse((ROOT / "bench" / "scheduling" / "runner.py").read_text())
    (runner,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Runner"]
    assert runner.end_lineno - runner.lineno + 1 <= MAX_RUNNER_LINES


def test_phases_read_their_context_not_the_runner():
    """A phase receives a PhaseContext (bench.scheduling.context); none names the Runner."""
    for name in PHASE_MODULES:
        text = (ROOT / "bench" / "scheduling" / name).read_text()
        assert "Runner" not in text.replace("runner.py", ""), name
        assert "scheduling.runner" not in text, name

"""The house stays easy to change: small functions, a scheduler that only schedules, modules of a
readable size (the sizes docs/backends.md states). Measured on the source, so it holds on any machine."""

import ast

from tests.conftest import ROOT

MAX_FUNCTION_LINES = 80
MAX_RUNNER_LINES = 150
MAX_MODULE_LINES = 400


def _sources():
    for package in ("bench", "reports"):
        yield from sorted((ROOT / package).rglob("*.py"))


def test_no_function_over_80_lines_and_no_module_over_400():
    long_functions, long_modules = [], []
    for path in _sources():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long_functions and not long_modules, long_functions + long_modules


def test_the_runner_only_schedules():
    tree = ast.parse((ROOT / "bench" / "scheduling" / "runner.py").read_text())
    (runner,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Runner"]
    assert runner.end_lineno - runner.lineno + 1 <= MAX_RUNNER_LINES

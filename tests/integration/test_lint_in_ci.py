"""Lint is part of CI: .ci/run runs `make lint`, and the tree is ruff-clean (code and docs' code blocks)."""

from __future__ import annotations

import subprocess

from tests.support.processes import REPO

RUFF = REPO / ".venv" / "bin" / "ruff"


def test_ci_runs_lint_before_the_tests() -> None:
    steps = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert "make lint" in steps and "make test" in steps
    assert steps.index("make lint") < steps.index("make test")


def test_the_tree_passes_ruff_check_and_ruff_format() -> None:
    for args in (["check", "."], ["format", "--check", "."]):
        done = subprocess.run([str(RUFF), *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"ruff {' '.join(args)}:\n{done.stdout[-3000:]}{done.stderr[-1000:]}"

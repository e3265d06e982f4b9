"""Sessions: tests (default), lint, typecheck, bench, docs; soak and crash runs on demand."""

from __future__ import annotations

import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
# The current interpreter: CI and developers run one Python; the classifiers list the others.
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


@nox.session(python=PY)
def tests(session: nox.Session) -> None:
    """The default suite: unit, property and integration tests against real services."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session(python=PY, default=False)
def soak(session: nox.Session) -> None:
    """Long runs: crash trials, soak tests and big hypothesis budgets."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "-m",
        "slow",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": "soak", "SAFLA_DIAG_SOAK": "1"},
    )


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PY)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[test]", "mypy>=1.11")
    session.run("mypy", "--strict", "safla_diag")


@nox.session(python=PY)
def bench(session: nox.Session) -> None:
    """Every benchmarks/bench_*.py: ours beside the naive version, printed and saved as JSON."""
    session.install("-e", ".[test,bench]")
    only = set(session.posargs)
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        if only and script.stem not in only and script.stem.removeprefix("bench_") not in only:
            continue
        session.run("python", str(script))


@nox.session(python=PY)
def docs(session: nox.Session) -> None:
    """Build docs/ strictly."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))

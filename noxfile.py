"""Sessions: tests (default), lint, typecheck, bench, docs; soak and crash runs on demand."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
# A Python the classifiers promise but the machine lacks is a failure, never a silent skip.
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
# Every Python the classifiers list ("Programming Language :: Python :: 3.11", ...): the tests run
# on each of them, one after the other (``nox -s tests``; ``nox -s tests-3.12`` for one).
SUPPORTED = nox.project.python_versions(nox.project.load_toml(ROOT / "pyproject.toml"))


def _pyenv_interpreters(versions: list[str]) -> None:
    """
    Put pyenv's interpreters for ``versions`` on PATH (the newest patch release of each).

    pyenv's shims answer only for the versions made global, so ``python3.12`` may be installed
    yet not found; nox would then fail the session (as it should when one is really missing).
    """
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for version in versions:
        dirs = sorted(
            root.glob(f"{version}.*/bin"),
            key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()],
        )
        if dirs and (dirs[-1] / f"python{version}").exists():
            found.append(str(dirs[-1]))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_pyenv_interpreters(SUPPORTED)
# The one-off sessions (lint, typecheck, docs, bench) run on the current interpreter.
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


@nox.session(python=SUPPORTED)
def tests(session: nox.Session) -> None:
    """The default suite on every supported Python: unit, property and integration tests."""
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
    """ruff check, ruff format --check, codespell and validate-pyproject (as pre-commit does)."""
    session.install("ruff>=0.6", "codespell>=2.3", "validate-pyproject[all]>=0.18")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("codespell")
    session.run("validate-pyproject", "pyproject.toml")


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
    """Redraw the pictures in docs/img (when Chromium is there), then build docs/ strictly."""
    session.install("-e", ".[docs]", "playwright>=1.40")
    if Path("/usr/bin/chromium").exists() or shutil.which("chromium"):
        session.run("python", "docs/scripts/screenshots.py", str(ROOT / "docs" / "img"))
    else:
        session.log("no Chromium: docs/img keeps its committed pictures")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))

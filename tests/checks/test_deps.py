"""check_dependencies: versions from metadata, real missing and broken packages, a pip hint."""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from safla_diag import DependencyReport, check_dependencies
from safla_diag.checks._deps import FALLBACK_REQUIREMENTS

REPO = Path(__file__).resolve().parents[2]


def make_dist(
    site: Path, dist: str, module: str, version: str, body: str, *, top_level: bool = False
) -> None:
    """Install a tiny distribution by hand: a module and a dist-info with METADATA and RECORD."""
    pkg = site / module
    pkg.mkdir()
    (pkg / "__init__.py").write_text(body)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "RECORD").write_text(
        f"{module}/__init__.py,,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n"
    )
    if top_level:
        (info / "top_level.txt").write_text(f"{module}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for hand-made distributions; their modules are unloaded after."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_default_checks_our_runtime_dependencies() -> None:
    """With no arguments, the runtime dependencies of pyproject.toml are checked, all usable here."""
    report = check_dependencies()
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert list(FALLBACK_REQUIREMENTS) == declared
    # installed metadata may list them in another order (hatchling sorts them)
    assert sorted(p.requirement for p in report) == sorted(declared)
    assert report, report.to_text()
    assert report.missing == () and report.install_hint == ""


def test_faiss_cpu_maps_to_faiss() -> None:
    """The distribution faiss-cpu is imported as faiss, known from its metadata."""
    status = check_dependencies(["faiss-cpu"]).get("faiss_cpu")
    assert status is not None
    assert status.import_names == ("faiss",)
    assert status.ok and status.version


def test_a_really_missing_package() -> None:
    """A package that is not installed is reported missing, with a pip hint."""
    report = check_dependencies(["safla-diag-no-such-package>=2", "attrs"])
    assert not report
    assert report.missing == ("safla-diag-no-such-package",)
    assert report.get("safla-diag-no-such-package").status == "missing"  # type: ignore[union-attr]
    assert report.install_hint == "pip install 'safla-diag-no-such-package>=2'"
    assert report.get("attrs").ok  # type: ignore[union-attr]


def test_mapping_comes_from_record(site: Path) -> None:
    """Without top_level.txt, the RECORD tells which module a distribution provides."""
    make_dist(site, "odd-dist-name", "unrelated_module", "1.2.3", "X = 1\n")
    status = check_dependencies("odd-dist-name").packages[0]
    assert status.import_names == ("unrelated_module",)
    assert status.ok and status.version == "1.2.3"


def test_a_package_whose_import_fails(site: Path) -> None:
    """An installed package that raises on import is broken, with the error's text."""
    make_dist(
        site,
        "broken-dist",
        "brokenmod",
        "0.4",
        "raise ImportError('libbroken.so.1: cannot open shared object file')\n",
        top_level=True,
    )
    report = check_dependencies(["broken-dist"])
    [status] = report.packages
    assert status.status == "broken"
    assert status.version == "0.4"
    assert status.detail == "ImportError: libbroken.so.1: cannot open shared object file"
    assert report.unusable == ("broken-dist",) and report.missing == ()
    assert report.install_hint == "pip install --force-reinstall broken-dist"
    assert "brokenmod" not in sys.modules


def test_verify_false_does_not_import(site: Path) -> None:
    """verify=False finds the module without running it."""
    make_dist(site, "broken-dist", "brokenmod", "0.4", "raise ImportError('no')\n")
    assert check_dependencies(["broken-dist"], verify=False)
    assert "brokenmod" not in sys.modules


def test_other_exceptions_on_import_count_as_broken(site: Path) -> None:
    """A module that fails with something other than ImportError is reported, not raised."""
    make_dist(site, "oserr-dist", "oserrmod", "1.0", "raise OSError('no GPU, password=hunter2')\n")
    [status] = check_dependencies(["oserr-dist"]).packages
    assert status.status == "broken"
    assert status.detail == "OSError: no GPU, password=***"


def test_outdated_version(site: Path) -> None:
    """A version that the requirement excludes is reported, with an --upgrade hint."""
    make_dist(site, "old-dist", "oldmod", "1.14.2", "")
    report = check_dependencies(["old-dist>=1.15"])
    [status] = report.packages
    assert status.status == "outdated"
    assert status.detail == "version 1.14.2 does not satisfy >=1.15"
    assert report.install_hint == "pip install --upgrade 'old-dist>=1.15'"


@pytest.mark.parametrize(
    ("spec", "ok"),
    [(">=1.15", False), (">=1.14", True), ("==1.14.*", True), ("~=1.13", True), ("~=1.13.0", False),
     ("<2,!=1.14.2", False), (">1.14.1,<1.15", True), ("==1.14.2", True)],
)  # fmt: skip
def test_version_specifiers(site: Path, spec: str, ok: bool) -> None:
    """The common specifiers compare release numbers."""
    make_dist(site, "ver-dist", "vermod", "1.14.2", "")
    assert bool(check_dependencies([f"ver-dist{spec}"])) is ok


def test_import_names_and_stdlib() -> None:
    """An import name with no distribution of its own (asyncio) is checked as a module."""
    report = check_dependencies(["asyncio", "json"])
    assert report
    assert [p.import_names for p in report] == [("asyncio",), ("json",)]


def test_invalid_requirement_is_reported_not_installed() -> None:
    """A requirement that cannot be parsed is reported and left out of the pip command."""
    report = check_dependencies(["not a requirement!", "safla-diag-nope"])
    assert [p.status for p in report] == ["invalid", "missing"]
    assert report.install_hint == "pip install safla-diag-nope"


def test_renderings() -> None:
    """Text, dict, JSON, HTML and repr all describe the same report."""
    report = check_dependencies(["attrs", "safla-diag-nope"])
    data = report.to_dict()
    assert data["ok"] is False and data["missing"] == ["safla-diag-nope"]
    assert json.loads(report.to_json()) == data
    text = report.to_text()
    assert "MISSING  safla-diag-nope" in text
    assert text.endswith("Fix with: pip install safla-diag-nope")
    assert "<table>" in report._repr_html_() and "safla-diag-nope" in report._repr_html_()
    assert repr(report) == (
        "<DependencyReport ok=False packages=2 missing=['safla-diag-nope'] unusable=[]>"
    )
    assert isinstance(report, DependencyReport)


def test_empty_list_is_all_present() -> None:
    """Nothing to check is a truthy report with no hint."""
    report = check_dependencies([])
    assert report and report.install_hint == "" and len(report) == 0

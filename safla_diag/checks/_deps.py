"""
check_dependencies: what is installed, at which version, and why not.

Distribution names (``faiss-cpu``) map to import names (``faiss``) through the installed metadata
(``top_level.txt``, else the files of the distribution's RECORD), never a hand-kept table. Nothing
here shells out.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import attrs

from .._redact import redact
from .._report import JsonMixin, html_block, html_table

if TYPE_CHECKING:
    from importlib.metadata import Distribution

__all__ = ["DependencyReport", "PackageStatus", "check_dependencies"]

logger = logging.getLogger("safla_diag.checks")

# Used only when safla-diag itself is not installed (a source checkout): pyproject.toml's
# runtime dependencies, which the tests compare against this list.
FALLBACK_REQUIREMENTS = (
    "numpy>=1.24",
    "faiss-cpu>=1.15",
    "psutil>=5.9",
    "tenacity>=8.2",
    "attrs>=23.1",
    "typing-extensions>=4.6",
    "xxhash>=3",
    "sortedcontainers>=2.4",
    "rich>=13",
)

Status = Literal["ok", "missing", "broken", "outdated", "invalid"]

_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?P<extras>\[[^\]]*\])?"
    r"\s*\(?(?P<spec>[^;()]*)\)?\s*(?:;(?P<marker>.*))?$"
)
_SPEC = re.compile(r"^\s*(?P<op>~=|==|!=|<=|>=|<|>)\s*(?P<version>[^\s,]+)\s*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_ERROR = 300


@attrs.frozen(kw_only=True)
class PackageStatus:
    """
    One package of a :class:`DependencyReport`.

    Attributes:
        name: The distribution name, as asked for (``faiss-cpu``).
        requirement: The requirement checked, with its version specifier (``faiss-cpu>=1.15``).
        import_names: The modules the distribution provides (``("faiss",)``), from its metadata.
        version: The installed version, or None when it is not installed.
        status: ``ok``, ``missing`` (not installed), ``broken`` (installed, but importing it fails)
            ``outdated`` (installed at a version the requirement excludes) or ``invalid`` (the
            requirement itself cannot be read).
        detail: Why it is not usable: the import error's text, or the version conflict.
    """

    name: str
    requirement: str
    import_names: tuple[str, ...] = ()
    version: str | None = None
    status: Status = "ok"
    detail: str | None = None

    @property
    def ok(self) -> bool:
        """True when the package is installed, importable and recent enough."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """The status as plain data."""
        return {
            "name": self.name,
            "requirement": self.requirement,
            "import_names": list(self.import_names),
            "version": self.version,
            "status": self.status,
            "ok": self.ok,
            "detail": self.detail,
        }


@attrs.frozen(kw_only=True)
class DependencyReport(JsonMixin):
    """
    What :func:`check_dependencies` found: one :class:`PackageStatus` per package.

    The report is truthy when every package is usable. ``.missing`` lists what is not installed,
    ``.unusable`` what is installed but broken or too old, and ``.install_hint`` is the pip command
    that fixes both (empty when there is nothing to fix).

    Attributes:
        packages: The status of each package, in the order asked.
    """

    packages: tuple[PackageStatus, ...]

    def __bool__(self) -> bool:
        return all(p.ok for p in self.packages)

    def __iter__(self) -> Iterator[PackageStatus]:
        return iter(self.packages)

    def __len__(self) -> int:
        return len(self.packages)

    def __repr__(self) -> str:
        return (
            f"<DependencyReport ok={bool(self)} packages={len(self.packages)}"
            f" missing={list(self.missing)!r} unusable={list(self.unusable)!r}>"
        )

    @property
    def ok(self) -> bool:
        """True when every package is usable (same as ``bool(report)``)."""
        return bool(self)

    @property
    def missing(self) -> tuple[str, ...]:
        """Names of the packages that are not installed."""
        return tuple(p.name for p in self.packages if p.status == "missing")

    @property
    def unusable(self) -> tuple[str, ...]:
        """Names of the packages that are installed but broken or too old (or not readable)."""
        return tuple(p.name for p in self.packages if p.status in ("broken", "outdated", "invalid"))

    @property
    def install_hint(self) -> str:
        """The pip command that installs or repairs every package that is not ok; ``""`` if none."""
        import shlex

        bad = [p for p in self.packages if not p.ok and p.status != "invalid"]
        if not bad:
            return ""
        flags = []
        if any(p.status == "outdated" for p in bad):
            flags.append("--upgrade")
        if any(p.status == "broken" for p in bad):
            flags.append("--force-reinstall")
        return " ".join(["pip install", *flags, *(shlex.quote(p.requirement) for p in bad)])

    def get(self, name: str) -> PackageStatus | None:
        """The status of the package called ``name`` (distribution name), or None."""
        wanted = _normalise(name)
        return next((p for p in self.packages if _normalise(p.name) == wanted), None)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data: ``ok``, ``packages``, ``missing``, ``unusable``, ``install_hint``."""
        return {
            "ok": bool(self),
            "packages": [p.to_dict() for p in self.packages],
            "missing": list(self.missing),
            "unusable": list(self.unusable),
            "install_hint": self.install_hint,
        }

    def to_text(self) -> str:
        """The report as aligned lines of text, with the pip command when something is wrong."""
        usable = sum(p.ok for p in self.packages)
        lines = [f"Dependencies: {usable} of {len(self.packages)} usable"]
        width = max((len(p.name) for p in self.packages), default=0)
        for p in self.packages:
            label = "ok" if p.ok else p.status.upper()
            version = p.version or "-"
            line = f"  {label:<9}{p.name:<{width}}  {version}"
            if p.import_names and p.import_names != (p.name,):
                line += f"  (import {', '.join(p.import_names)})"
            if p.detail:
                line += f"  {p.detail}"
            lines.append(line.rstrip())
        if hint := self.install_hint:
            lines.append(f"Fix with: {hint}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        table = html_table(
            ("package", "version", "status", "import", "detail"),
            (
                (
                    p.name,
                    p.version or "",
                    "ok" if p.ok else p.status,
                    ", ".join(p.import_names),
                    p.detail or "",
                )
                for p in self.packages
            ),
        )
        usable = sum(p.ok for p in self.packages)
        notes = [f"Fix with: {self.install_hint}"] if self.install_hint else []
        title = f"Dependencies: {usable} of {len(self.packages)} usable"
        return html_block(title, table, notes=notes, ok=self.ok)


def check_dependencies(
    packages: Iterable[str] | str | None = None, *, verify: bool = True
) -> DependencyReport:
    """
    Check that packages are installed, importable and recent enough.

    Args:
        packages: Requirements such as ``"faiss-cpu>=1.15"`` or plain names (a distribution name,
            or an import name like ``"asyncio"`` when there is no distribution of that name).
            None checks safla-diag's own runtime dependencies, read from its installed metadata
            (or a built-in copy of them in a source checkout).
        verify: Import each package's modules, so a package whose import fails (a missing shared
            library, a broken install) is reported with the error. With ``verify=False`` only
            the metadata and the module finder are consulted: much faster, never imports.

    Returns:
        The report; truthy when every package is usable.
    """
    if packages is None:
        requirements = _own_requirements()
    elif isinstance(packages, str):
        requirements = [packages]
    else:
        requirements = list(packages)
    report = DependencyReport(packages=tuple(_check(r, verify=verify) for r in requirements))
    if not report:
        logger.info(
            "dependencies not usable: %s", redact(", ".join(report.missing + report.unusable))
        )
    return report


def _own_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("safla-diag") or []
    except PackageNotFoundError:
        return list(FALLBACK_REQUIREMENTS)
    runtime = []
    for req in declared:
        m = _REQUIREMENT.match(req)
        if m and m.group("marker") and "extra" in m.group("marker"):
            continue  # an optional extra, not a runtime dependency
        runtime.append(req.split(";", 1)[0].strip())
    return runtime


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _check(requirement: str, *, verify: bool) -> PackageStatus:
    from importlib.metadata import PackageNotFoundError, distribution

    m = _REQUIREMENT.match(requirement)
    if m is None or not all(_SPEC.match(c) for c in m.group("spec").split(",") if c.strip()):
        return PackageStatus(
            name=requirement,
            requirement=requirement,
            status="invalid",
            detail="not a valid requirement",
        )
    name, spec = m.group("name"), re.sub(r"\s+", "", m.group("spec"))
    req_text = f"{name}{m.group('extras') or ''}{spec}"
    try:
        dist: Distribution | None = distribution(name)
    except PackageNotFoundError:
        dist = None
    if dist is None:
        return _check_module_only(name, req_text, verify=verify)
    version = dist.version
    modules = _import_names(dist, name)
    status = functools.partial(
        PackageStatus, name=name, requirement=req_text, import_names=modules, version=version
    )
    if spec and (conflict := _version_conflict(version, spec)):
        return status(status="outdated", detail=conflict)
    for module in modules:
        if error := _import_problem(module, verify=verify):
            return status(status="broken", detail=error)
    return status()


def _check_module_only(name: str, req_text: str, *, verify: bool) -> PackageStatus:
    """No distribution of that name: maybe it is an import name (asyncio, faiss)."""
    if not _IDENTIFIER.match(name) or _find_spec(name) is None:
        return PackageStatus(
            name=name, requirement=req_text, status="missing", detail="not installed"
        )
    error = _import_problem(name, verify=verify)
    version = None
    if verify and not error:
        found = getattr(importlib.import_module(name), "__version__", None)
        version = found if isinstance(found, str) else None
    return PackageStatus(
        name=name,
        requirement=req_text,
        import_names=(name,),
        version=version,
        status="broken" if error else "ok",
        detail=error,
    )


def _find_spec(module: str) -> object:
    import importlib.util

    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def _import_problem(module: str, *, verify: bool) -> str | None:
    """Why ``module`` cannot be imported, or None when it can."""
    if not verify:
        return None if _find_spec(module) is not None else f"module {module!r} not found"
    try:
        importlib.import_module(module)
    except Exception as err:  # any failure on import makes the package unusable
        text = redact(f"{type(err).__name__}: {err}")
        return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
    return None


def _import_names(dist: Distribution, name: str) -> tuple[str, ...]:
    """The top-level modules a distribution provides, from top_level.txt or its RECORD."""
    names: list[str] = []
    top_level = dist.read_text("top_level.txt")
    if top_level:
        names = [line.strip() for line in top_level.splitlines() if line.strip()]
    else:
        for path in dist.files or ():
            parts = path.parts
            if (
                not parts
                or parts[0] in ("..", "__pycache__")
                or parts[0].endswith((".dist-info", ".egg-info", ".data", ".pth"))
            ):
                continue
            if len(parts) == 1:
                if not parts[0].endswith((".py", ".so", ".pyd")):
                    continue
                candidate = parts[0].split(".", 1)[0]
            else:
                candidate = parts[0]
            if _IDENTIFIER.match(candidate) and candidate not in names:
                names.append(candidate)
    names = [n for n in names if _IDENTIFIER.match(n)]
    public = [n for n in names if not n.startswith("_")]
    if public:
        names = public
    if not names:
        names = [_normalise(name).replace("-", "_")]
    return tuple(sorted(names))


def _release(version: str) -> tuple[int, ...]:
    """The numeric release part of a version: '1.15.0rc1' -> (1, 15, 0)."""
    numbers = []
    for part in version.split("+", 1)[0].split("."):
        m = re.match(r"\d+", part)
        if m is None:
            break
        numbers.append(int(m.group()))
        if m.end() != len(part):
            break
    return tuple(numbers)


def _cmp(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    width = max(len(a), len(b))
    a, b = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    return (a > b) - (a < b)


def _version_conflict(version: str, spec: str) -> str | None:
    """Compare the release numbers with each clause of ``spec``; the first clause that fails."""
    have = _release(version)
    for clause in spec.split(","):
        m = _SPEC.match(clause)
        if m is None or not have:
            continue  # a clause we cannot read is not a reason to call the package unusable
        op, want_text = m.group("op"), m.group("version")
        want = _release(want_text.rstrip(".*"))
        c = _cmp(have, want)
        ok = {
            ">=": c >= 0,
            ">": c > 0,
            "<=": c <= 0,
            "<": c < 0,
            "==": c == 0 if not want_text.endswith(".*") else have[: len(want)] == want,
            "!=": c != 0,
            "~=": c >= 0 and have[: max(len(want) - 1, 1)] == want[: max(len(want) - 1, 1)],
        }[op]
        if not ok:
            return f"version {version} does not satisfy {op}{want_text}"
    return None

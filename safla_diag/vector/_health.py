"""The reports of the vector layer: IndexHealth (one check of an index) and BackupInfo."""

from __future__ import annotations

from typing import Any

import attrs

from .._redact import redact
from .._report import JsonMixin, html_block, html_table

__all__ = ["BackupInfo", "Check", "IndexHealth"]


@attrs.frozen(kw_only=True)
class Check:
    """
    One step of a health check.

    Attributes:
        name: Short name of the check ("file present", "checksum", "isolated load", ...).
        passed: True when it passed, False when it failed, None when it could not be run.
        detail: What was found, in words an operator can act on.
    """

    name: str
    passed: bool | None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the check as a plain dict."""
        return {"name": self.name, "passed": self.passed, "detail": redact(self.detail)}


def _fmt_passed(passed: bool | None) -> str:
    return {True: "ok", False: "FAILED", None: "skipped"}[passed]


@attrs.frozen(kw_only=True)
class IndexHealth(JsonMixin):
    """
    The result of :meth:`VectorIndexRecovery.diagnose`.

    Truthy when the index is healthy. ``problem`` names the first check that failed and why, and
    ``advice`` says what to do about it.

    Attributes:
        ok: True when every check that ran passed.
        problem: The first failure, in words an operator can act on; None when ok.
        advice: What to do next ("restore from backup", "rebuild", ...); None when ok.
        path: The index file that was checked.
        ntotal: Vectors in the index, when known (from the manifest or the isolated load).
        dimension: The index's dimension, when known.
        index_class: The faiss class, e.g. ``IndexFlatL2``, when known.
        metric: ``l2`` or ``inner_product``, when known.
        checksum_ok: True when the file matches its manifest's checksum, False when it does not,
            None when there is no manifest to compare with (the checksum could not be verified).
        manifest: True when a manifest was found and parsed.
        generation: The manifest's generation number, when there is one.
        deep: True when the index was loaded in an isolated child process.
        size: The file's size in bytes, when it exists.
        checks: Every check that ran, in order.
        notes: Observations that are not failures (e.g. the checksum could not be verified).
        duration: Seconds the diagnosis took.
    """

    ok: bool
    problem: str | None = None
    advice: str | None = None
    path: str = ""
    ntotal: int | None = None
    dimension: int | None = None
    index_class: str | None = None
    metric: str | None = None
    checksum_ok: bool | None = None
    manifest: bool = False
    generation: int | None = None
    deep: bool = False
    size: int | None = None
    checks: tuple[Check, ...] = ()
    notes: tuple[str, ...] = ()
    duration: float = 0.0

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        # Short: the failed check's name; the full sentence is in .problem and to_text().
        failed = self.failed_check
        problem = failed.name if failed else (redact(self.problem)[:40] if self.problem else None)
        return f"<IndexHealth ok={self.ok} problem={problem!r} ntotal={self.ntotal}>"

    @property
    def failed_check(self) -> Check | None:
        """The first check that failed, or None."""
        return next((c for c in self.checks if c.passed is False), None)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain, JSON-ready data (redacted)."""
        return {
            "ok": self.ok,
            "problem": redact(self.problem) if self.problem else None,
            "advice": redact(self.advice) if self.advice else None,
            "path": redact(self.path),
            "ntotal": self.ntotal,
            "dimension": self.dimension,
            "index_class": self.index_class,
            "metric": self.metric,
            "checksum_ok": self.checksum_ok,
            "manifest": self.manifest,
            "generation": self.generation,
            "deep": self.deep,
            "size": self.size,
            "checks": [c.to_dict() for c in self.checks],
            "notes": [redact(n) for n in self.notes],
            "duration": round(self.duration, 6),
        }

    def to_text(self) -> str:
        """Return a few lines for an operator's terminal."""
        head = "healthy" if self.ok else f"UNHEALTHY: {redact(self.problem or '')}"
        lines = [f"vector index {redact(self.path)}: {head}"]
        facts = [
            f"{k}={v}"
            for k, v in (
                ("class", self.index_class),
                ("dimension", self.dimension),
                ("ntotal", self.ntotal),
                ("metric", self.metric),
                ("generation", self.generation),
                ("size", self.size),
            )
            if v is not None
        ]
        if facts:
            lines.append("  " + " ".join(facts))
        for c in self.checks:
            lines.append(f"  [{_fmt_passed(c.passed):>7}] {c.name}: {redact(c.detail)}")
        lines.extend(f"  note: {redact(n)}" for n in self.notes)
        if self.advice:
            lines.append(f"  what to do: {redact(self.advice)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The report for Jupyter: the verdict, the facts, every check and the advice (redacted)."""
        title = "vector index healthy" if self.ok else f"vector index UNHEALTHY: {self.problem}"
        facts = html_table(
            ["path", "class", "dimension", "ntotal", "metric", "generation", "size"],
            [
                [
                    redact(self.path),
                    self.index_class or "",
                    "" if self.dimension is None else self.dimension,
                    "" if self.ntotal is None else self.ntotal,
                    self.metric or "",
                    "" if self.generation is None else self.generation,
                    "" if self.size is None else self.size,
                ]
            ],
        )
        checks = html_table(
            ["check", "result", "detail"],
            [[c.name, _fmt_passed(c.passed), redact(c.detail)] for c in self.checks],
        )
        notes = [f"note: {redact(n)}" for n in self.notes]
        if self.advice:
            notes.append(f"What to do: {redact(self.advice)}")
        return html_block(redact(title), facts, checks, notes=notes, ok=self.ok)


@attrs.frozen(kw_only=True)
class BackupInfo(JsonMixin):
    """
    One backup generation in the backup folder.

    Attributes:
        path: The backup's folder.
        name: Its name (sorts by time).
        created_at: When it was taken (seconds since the epoch).
        generation: The live index's generation it was taken from.
        size: Size of the index file in bytes.
        ntotal: Vectors in it.
        dimension: Its dimension.
        index_class: The faiss class.
        metric: ``l2`` or ``inner_product``.
        checksum_algorithm: The manifest's checksum algorithm.
        verified: True when its checksums were verified just now, False when they failed, None when
            not verified (``list_backups(verify=False)``).
        problem: Why it cannot be restored, or None.
    """

    path: str
    name: str
    created_at: float | None = None
    generation: int | None = None
    size: int | None = None
    ntotal: int | None = None
    dimension: int | None = None
    index_class: str | None = None
    metric: str | None = None
    checksum_algorithm: str | None = None
    verified: bool | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is known to be wrong with it."""
        return self.problem is None and self.verified is not False

    def __repr__(self) -> str:
        return f"<BackupInfo name={self.name!r} ntotal={self.ntotal} ok={self.ok}>"

    def to_dict(self) -> dict[str, Any]:
        """Return the backup's description as plain data."""
        d = attrs.asdict(self)
        d["path"] = redact(self.path)
        d["problem"] = redact(self.problem) if self.problem else None
        d["ok"] = self.ok
        return d

    def to_text(self) -> str:
        """Return one line describing the backup."""
        state = {True: "verified", False: "DAMAGED", None: "not verified"}[self.verified]
        if self.problem:
            state = f"UNUSABLE: {redact(self.problem)}"
        return f"{self.name}  ntotal={self.ntotal} dimension={self.dimension} size={self.size}  {state}"

    def _repr_html_(self) -> str:
        """The backup for Jupyter: one row of facts (redacted)."""
        state = {True: "verified", False: "DAMAGED", None: "not verified"}[self.verified]
        rows = [
            [self.name, "" if self.generation is None else self.generation,
             "" if self.ntotal is None else self.ntotal,
             "" if self.dimension is None else self.dimension,
             "" if self.size is None else self.size,
             redact(self.problem) if self.problem else state]
        ]  # fmt: skip
        table = html_table(["name", "generation", "ntotal", "dimension", "size", "state"], rows)
        return html_block(f"backup {self.name}", table, ok=self.ok)

"""The memory limit and usage of the process's cgroup (v1 or v2), when one is set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupMemory", "read_cgroup_memory", "refresh_usage"]

# v1 reports "no limit" as a huge page-aligned number (2**63 rounded down to the page size).
_UNLIMITED = 1 << 60


@dataclass(frozen=True, slots=True)
class CgroupMemory:
    """A cgroup memory limit and the cgroup's working set (usage minus inactive file cache)."""

    version: int
    path: str
    limit_bytes: int
    usage_bytes: int | None

    @property
    def percent(self) -> float | None:
        """Working set as a percent of the limit."""
        if self.usage_bytes is None:
            return None
        return 100.0 * self.usage_bytes / self.limit_bytes


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    if value <= 0 or value >= _UNLIMITED:
        return None
    return value


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, UnicodeDecodeError, ValueError):
        pass
    return 0


def _own_cgroups(root: Path) -> tuple[str | None, str | None]:
    """The v2 path and the v1 memory-controller path of this process, from /proc/self/cgroup."""
    try:
        text = (root / "proc/self/cgroup").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, None
    v2 = v1 = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _candidates(base: Path, rel: str) -> list[Path]:
    """The cgroup folder and its ancestors up to the mount (a parent's limit applies too)."""
    rel = rel.strip("/")
    dirs: list[Path] = []
    parts = [p for p in rel.split("/") if p and p != ".."]
    for i in range(len(parts), -1, -1):
        d = base.joinpath(*parts[:i]) if i else base
        if d.is_dir():
            dirs.append(d)
    return dirs


def _rel(d: Path, mount: Path) -> str:
    rel = d.relative_to(mount).as_posix()
    return "/" if rel == "." else "/" + rel


def read_cgroup_memory(root: Path | str = "/") -> CgroupMemory | None:
    """
    The tightest cgroup memory limit that applies to this process, with its usage.

    cgroup v2 (``memory.max``, ``memory.current``, ``memory.stat``) is tried first, then v1
    (``memory.limit_in_bytes``, ``memory.usage_in_bytes``). In a container the path in
    ``/proc/self/cgroup`` is often not visible; the mount's root, which then is the container's
    own cgroup, is used instead. Ancestors count: the smallest limit on the way up wins.

    Args:
        root: The file-system root to read ``proc`` and ``sys/fs/cgroup`` under (a test seam).

    Returns:
        The limit and usage, or None when no limit is set or nothing can be read.
    """
    root = Path(root)
    v2_path, v1_path = _own_cgroups(root)
    best: CgroupMemory | None = None
    if v2_path is not None:
        mount = root / "sys/fs/cgroup"
        for d in _candidates(mount, v2_path):
            limit = _read_int(d / "memory.max")
            if limit is None or (best is not None and limit >= best.limit_bytes):
                continue
            usage = _read_int(d / "memory.current")
            if usage is not None:
                usage = max(0, usage - _stat(d / "memory.stat", "inactive_file"))
            best = CgroupMemory(2, _rel(d, mount), limit, usage)
        if best is not None:
            return best
    if v1_path is not None:
        mount = root / "sys/fs/cgroup/memory"
        for d in _candidates(mount, v1_path):
            limit = _read_int(d / "memory.limit_in_bytes")
            if limit is None or (best is not None and limit >= best.limit_bytes):
                continue
            usage = _read_int(d / "memory.usage_in_bytes")
            if usage is not None:
                usage = max(0, usage - _stat(d / "memory.stat", "total_inactive_file"))
            best = CgroupMemory(1, _rel(d, mount), limit, usage)
    return best


def refresh_usage(cg: CgroupMemory, root: Path | str = "/") -> CgroupMemory:
    """
    The same cgroup with its usage read again (the limit is kept): two small file reads.

    Args:
        cg: A result of :func:`read_cgroup_memory`.
        root: The same file-system root.

    Returns:
        A new CgroupMemory with the current working set.
    """
    root = Path(root)
    if cg.version == 2:
        d = root / "sys/fs/cgroup" / cg.path.strip("/")
        usage = _read_int(d / "memory.current")
        inactive = "inactive_file"
    else:
        d = root / "sys/fs/cgroup/memory" / cg.path.strip("/")
        usage = _read_int(d / "memory.usage_in_bytes")
        inactive = "total_inactive_file"
    if usage is not None:
        usage = max(0, usage - _stat(d / "memory.stat", inactive))
    return CgroupMemory(cg.version, cg.path, cg.limit_bytes, usage)

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


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where one cgroup version keeps its memory files."""

    mount: str
    limit: str
    usage: str
    inactive: str  # the memory.stat key of reclaimable page cache


_LAYOUTS = {
    2: _Layout("sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
    1: _Layout(
        "sys/fs/cgroup/memory",
        "memory.limit_in_bytes",
        "memory.usage_in_bytes",
        "total_inactive_file",
    ),
}


def _working_set(d: Path, layout: _Layout) -> int | None:
    """Usage minus reclaimable page cache, as the kernel's OOM killer and kubelet count it."""
    usage = _read_int(d / layout.usage)
    if usage is None:
        return None
    return max(0, usage - _stat(d / "memory.stat", layout.inactive))


def _tightest(root: Path, version: int, own: str) -> CgroupMemory | None:
    """The smallest limit set on ``own`` or an ancestor, in one cgroup hierarchy."""
    layout = _LAYOUTS[version]
    mount = root / layout.mount
    best: CgroupMemory | None = None
    for d in _candidates(mount, own):
        limit = _read_int(d / layout.limit)
        if limit is None or (best is not None and limit >= best.limit_bytes):
            continue
        best = CgroupMemory(version, _rel(d, mount), limit, _working_set(d, layout))
    return best


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
    for version, own in ((2, v2_path), (1, v1_path)):
        if own is not None and (found := _tightest(root, version, own)) is not None:
            return found
    return None


def refresh_usage(cg: CgroupMemory, root: Path | str = "/") -> CgroupMemory:
    """
    The same cgroup with its usage read again (the limit is kept): two small file reads.

    Args:
        cg: A result of :func:`read_cgroup_memory`.
        root: The same file-system root.

    Returns:
        A new CgroupMemory with the current working set.
    """
    layout = _LAYOUTS[cg.version]
    d = Path(root) / layout.mount / cg.path.strip("/")
    return CgroupMemory(cg.version, cg.path, cg.limit_bytes, _working_set(d, layout))

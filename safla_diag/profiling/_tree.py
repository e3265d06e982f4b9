"""
A call tree rebuilt from a profile's caller edges, and what is drawn or exported from it.

cProfile keeps, per function, its totals and one level of callers: ``callers[f] = (calls,
primitive calls, tottime, cumtime)`` of the calls *from f*. The tree starts at the functions
nobody profiled called (the roots) and descends along those edges. Below the first level a
function's children are scaled by the share of its time that came through this path (what
gprof and snakeviz do): exact for a function with one caller, an estimate for one shared by
several callers. A function already on the path is not entered again (recursion), and the
tree is bounded (``max_nodes``, ``min_share``) so a big profile stays a small page.

The renderings:

- :func:`tree_html`: nested ``<details>`` elements (expand and collapse work without script),
  with time and share per frame and the hot path (the heaviest child, level after level) open
  and highlighted;
- :func:`icicle_svg`: the same tree as an icicle (a flame graph upside down), inline SVG;
- :func:`to_speedscope`: speedscope's file format (a ``sampled`` profile whose samples are the
  tree's paths, weighted by each frame's own time).

Nothing here loads anything from the network: the HTML and SVG are self-contained.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CallNode",
    "build_tree",
    "icicle_svg",
    "pictures_html",
    "speedscope_of",
    "to_speedscope",
    "tree_html",
]

FuncKey = tuple[str, int, str]

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


@dataclass
class CallNode:
    """One frame of the call tree: a function reached along one path."""

    key: FuncKey
    time: float  # seconds spent in this frame and below, along this path
    calls: int
    children: list[CallNode] = field(default_factory=list)
    hot: bool = False

    @property
    def self_time(self) -> float:
        """Seconds in this frame itself (its time less its children's), never negative."""
        return max(0.0, self.time - sum(c.time for c in self.children))

    @property
    def name(self) -> str:
        return self.key[2]

    @property
    def location(self) -> str:
        file, line, _ = self.key
        return "~" if file == "~" else f"{file}:{line}"


def _roots(stats: Mapping[FuncKey, Any]) -> list[FuncKey]:
    roots = [k for k, v in stats.items() if not any(c in stats for c in v[4])]
    if not roots and stats:  # every function has a caller: a cycle; start at the heaviest
        roots = [max(stats, key=lambda k: stats[k][3])]
    return roots


def build_tree(
    stats: Mapping[FuncKey, Any],
    *,
    max_nodes: int = 1500,
    max_depth: int = 64,
    min_share: float = 0.001,
) -> CallNode:
    """
    The call tree of pstats-layout ``stats`` under one synthetic root.

    Args:
        stats: ``{(file, line, function): (cc, nc, tottime, cumtime, callers)}``.
        max_nodes: At most this many frames (the heaviest are kept first).
        max_depth: At most this deep.
        min_share: Frames under this share of the total are left out.

    Returns:
        The root (``key == ("", 0, "<all>")``), its ``time`` the sum of the roots' times; the
        hot path's nodes have ``hot`` set.
    """
    children_of: dict[FuncKey, list[tuple[FuncKey, int, float]]] = {}
    for callee, (_cc, _nc, _tt, _ct, callers) in stats.items():
        for caller, edge in callers.items():
            if caller in stats:
                children_of.setdefault(caller, []).append((callee, int(edge[0]), float(edge[3])))
    roots = _roots(stats)
    top = [CallNode(k, float(stats[k][3]), int(stats[k][1])) for k in roots]
    root = CallNode(("", 0, "<all>"), sum(n.time for n in top), sum(n.calls for n in top))
    total = root.time or 1e-12
    budget = max_nodes
    # Breadth-first so that the budget keeps the upper, heavier levels of the tree.
    queue: list[tuple[CallNode, tuple[FuncKey, ...], float]] = []
    for node in sorted(top, key=lambda n: -n.time):
        if budget <= 0 or node.time / total < min_share:
            continue
        budget -= 1
        root.children.append(node)
        queue.append((node, (node.key,), 1.0))
    for node, path, _ in queue:
        if len(path) >= max_depth:
            continue
        cum = float(stats[node.key][3])
        scale = node.time / cum if cum > 0 else 0.0
        kids = []
        for callee, calls, t in children_of.get(node.key, ()):
            if callee in path:
                continue
            kids.append(CallNode(callee, t * scale, max(1, round(calls * scale)) if calls else 0))
        kids.sort(key=lambda n: -n.time)
        for kid in kids:
            if budget <= 0 or kid.time / total < min_share:
                break
            budget -= 1
            node.children.append(kid)
            queue.append((kid, (*path, kid.key), scale))
    node = root
    while node.children:
        node = max(node.children, key=lambda n: n.time)
        node.hot = True
    return root


_ids = itertools.count(1)

_TREE_CSS = """<style>
.safla-tree{font:12px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;text-align:left}
.safla-tree details{margin-left:1.1em}
.safla-tree>details{margin-left:0}
.safla-tree summary{cursor:pointer;white-space:nowrap;list-style-position:outside}
.safla-tree .leaf{margin-left:1.1em;padding-left:1em;white-space:nowrap}
.safla-tree .t{display:inline-block;min-width:6.5em;text-align:right;margin-right:.6em}
.safla-tree .p{display:inline-block;min-width:4em;text-align:right;margin-right:.6em;color:#57606a}
.safla-tree .loc{color:#8c959f;margin-left:.6em}
.safla-tree .hot>summary .n,.safla-tree .leaf.hot .n{color:#cf222e;font-weight:bold}
.safla-tree .bar{display:inline-block;height:.6em;background:#fd8c73;margin-right:.4em;vertical-align:middle}
</style>"""


def _frame_line(node: CallNode, total: float) -> str:
    share = node.time / total * 100 if total > 0 else 0.0
    width = max(1, round(share * 0.6))
    return (
        f'<span class="t">{node.time * 1000:.3f} ms</span>'
        f'<span class="p">{share:.1f}%</span>'
        f'<span class="bar" style="width:{width}px"></span>'
        f'<span class="n">{html.escape(node.name)}</span>'
        f'<span class="loc">{html.escape(node.location)}</span>'
    )


def _tree_items(node: CallNode, total: float, out: list[str]) -> None:
    for child in node.children:
        hot = " hot" if child.hot else ""
        title = f"{child.calls} calls, {child.self_time * 1000:.3f} ms in the function itself"
        if child.children:
            opened = " open" if child.hot else ""
            out.append(
                f'<details class="frame{hot}"{opened} title="{html.escape(title)}">'
                f"<summary>{_frame_line(child, total)}</summary>"
            )
            _tree_items(child, total, out)
            out.append("</details>")
        else:
            out.append(
                f'<div class="frame leaf{hot}" title="{html.escape(title)}">'
                f"{_frame_line(child, total)}</div>"
            )


def tree_html(root: CallNode) -> str:
    """The tree as nested ``<details>``: click a frame to expand or collapse it."""
    ident = f"safla-tree-{next(_ids)}"
    out = [_TREE_CSS, f'<div class="safla-tree" id="{ident}">']
    _tree_items(root, root.time, out)
    if not root.children:
        out.append("<p>no calls recorded</p>")
    out.append("</div>")
    return "".join(out)


def _colour(name: str, hot: bool) -> str:
    if hot:
        return "#fa4549"
    h = sum(map(ord, name)) % 40
    return f"hsl({15 + h},85%,{62 + h % 12}%)"


def icicle_svg(root: CallNode, *, width: int = 960, row: int = 18, max_depth: int = 40) -> str:
    """
    The tree as an icicle: one row per depth, each frame as wide as its share of the time.

    Frames narrower than a pixel are left out. Hover a frame for its name, time and location.
    """
    total = root.time
    rects: list[str] = []
    depth_seen = 0

    def walk(node: CallNode, x: float, depth: int) -> None:
        nonlocal depth_seen
        for child in node.children:
            w = child.time / total * width if total > 0 else 0.0
            if w >= 1.0 and depth < max_depth:
                depth_seen = max(depth_seen, depth + 1)
                y = depth * row
                tip = f"{child.name} — {child.time * 1000:.3f} ms ({child.time / total:.1%}) {child.location}"
                label = html.escape(child.name) if w > 40 else ""
                rects.append(
                    f'<g><title>{html.escape(tip)}</title><rect x="{x:.2f}" y="{y}" '
                    f'width="{w:.2f}" height="{row - 1}" fill="{_colour(child.name, child.hot)}" '
                    f'rx="2"></rect><text x="{x + 3:.2f}" y="{y + row - 5}" '
                    f'font-size="11" '
                    f'font-family="monospace">{label[: max(0, int(w / 7) - 1)]}</text></g>'
                )
                walk(child, x, depth + 1)
            x += w

    walk(root, 0.0, 0)
    height = max(1, depth_seen) * row
    return (
        f'<svg class="safla-icicle" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"<title>icicle of {html.escape(str(len(rects)))} frames</title>{''.join(rects)}</svg>"
    )


def to_speedscope(root: CallNode, *, name: str, exporter: str) -> dict[str, Any]:
    """
    The tree in speedscope's file format: one ``sampled`` profile in seconds.

    Each frame of the tree that has time of its own becomes one sample: its stack (frame
    indexes from the outermost) weighted by that time.
    """
    frames: list[dict[str, Any]] = []
    index: dict[FuncKey, int] = {}
    samples: list[list[int]] = []
    weights: list[float] = []

    def frame_of(key: FuncKey) -> int:
        i = index.get(key)
        if i is None:
            file, line, func = key
            entry: dict[str, Any] = {"name": func}
            if file != "~":
                entry["file"] = file
                entry["line"] = int(line)
            i = index[key] = len(frames)
            frames.append(entry)
        return i

    def walk(node: CallNode, stack: list[int]) -> None:
        for child in node.children:
            here = [*stack, frame_of(child.key)]
            own = child.self_time
            if own > 0 or not child.children:
                samples.append(here)
                weights.append(own)
            walk(child, here)

    walk(root, [])
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "version": "0.0.1",
        "exporter": exporter,
        "name": name,
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "seconds",
                "startValue": 0.0,
                "endValue": float(sum(weights)),
                "samples": samples,
                "weights": weights,
            }
        ],
    }


def pictures_html(stats: Mapping[FuncKey, Any]) -> str:
    """The call tree (open on the hot path) and the icicle, for a report's ``_repr_html_``."""
    root = build_tree(stats)
    if not root.children:
        return ""
    return (
        '<details class="safla-calltree" open><summary><b>call tree</b> '
        "(click a frame to expand or collapse it; the hot path is open, in red)</summary>"
        f"{tree_html(root)}</details>"
        '<details class="safla-iciclebox" open><summary><b>icicle</b> '
        "(width: share of the time; hover a frame for its figures)</summary>"
        f"{icicle_svg(root)}</details>"
    )


def speedscope_of(stats: Mapping[FuncKey, Any], *, name: str) -> dict[str, Any]:
    """speedscope's file format for pstats-layout ``stats`` (the whole tree, no size bound)."""
    from .. import __version__

    root = build_tree(stats, max_nodes=200_000, min_share=0.0)
    return to_speedscope(root, name=name, exporter=f"safla_diag@{__version__}")

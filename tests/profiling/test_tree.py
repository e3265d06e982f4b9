"""The call tree rebuilt from caller edges: its shape, the hot path, HTML, icicle, speedscope."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest

from safla_diag import CPUProfiler, ProfileReport
from safla_diag.profiling._tree import build_tree, pictures_html

from .workload import branch, recurse

MAIN = ("app.py", 1, "main")
A = ("app.py", 10, "handler_a")
B = ("app.py", 20, "handler_b")
LEAF = ("lib.py", 5, "leaf")
LEN = ("~", 0, "<built-in method builtins.len>")

# main (10 s) -> a (7 s) -> leaf (6 s), main -> b (3 s) -> leaf (2 s) -> len (0.5 s)
STATS: dict[Any, Any] = {
    MAIN: (1, 1, 0.0, 10.0, {}),
    A: (1, 1, 1.0, 7.0, {MAIN: (1, 1, 1.0, 7.0)}),
    B: (1, 1, 1.0, 3.0, {MAIN: (1, 1, 1.0, 3.0)}),
    LEAF: (4, 4, 7.5, 8.0, {A: (3, 3, 6.0, 6.0), B: (1, 1, 1.5, 2.0)}),
    LEN: (4, 4, 0.5, 0.5, {LEAF: (4, 4, 0.5, 0.5)}),
}

# speedscope's file format (src/lib/file-format-spec.ts), the parts we write, as JSON Schema.
SPEEDSCOPE_SCHEMA = {
    "type": "object",
    "required": ["$schema", "version", "shared", "profiles"],
    "properties": {
        "$schema": {"const": "https://www.speedscope.app/file-format-schema.json"},
        "version": {"type": "string"},
        "name": {"type": "string"},
        "exporter": {"type": "string"},
        "activeProfileIndex": {"type": "integer", "minimum": 0},
        "shared": {
            "type": "object",
            "required": ["frames"],
            "properties": {
                "frames": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "file": {"type": "string"},
                            "line": {"type": "integer"},
                            "col": {"type": "integer"},
                        },
                        "additionalProperties": False,
                    },
                }
            },
        },
        "profiles": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": [
                    "type",
                    "name",
                    "unit",
                    "startValue",
                    "endValue",
                    "samples",
                    "weights",
                ],
                "properties": {
                    "type": {"const": "sampled"},
                    "name": {"type": "string"},
                    "unit": {
                        "enum": [
                            "none",
                            "nanoseconds",
                            "microseconds",
                            "milliseconds",
                            "seconds",
                            "bytes",
                        ]
                    },
                    "startValue": {"type": "number"},
                    "endValue": {"type": "number"},
                    "samples": {
                        "type": "array",
                        "items": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    },
                    "weights": {"type": "array", "items": {"type": "number", "minimum": 0}},
                },
            },
        },
    },
}


def test_tree_follows_the_caller_edges() -> None:
    """main is the root; a leaf reached from two callers gets each caller's share."""
    root = build_tree(STATS)
    assert [c.key for c in root.children] == [MAIN]
    main = root.children[0]
    assert [(c.key, c.time) for c in main.children] == [(A, 7.0), (B, 3.0)]
    leaf_under_a = main.children[0].children[0]
    assert leaf_under_a.key == LEAF and leaf_under_a.time == pytest.approx(6.0)
    # len's 0.5 s is split between the paths by the share of leaf's time each path carries.
    assert leaf_under_a.children[0].time == pytest.approx(0.5 * 6 / 8)
    leaf_under_b = main.children[1].children[0]
    assert leaf_under_b.children[0].time == pytest.approx(0.5 * 2 / 8)


def test_hot_path_is_the_heaviest_child_at_each_level() -> None:
    """main -> handler_a -> leaf -> len is hot; handler_b is not."""
    root = build_tree(STATS)
    hot = []
    node = root
    while node.children:
        node = max(node.children, key=lambda n: n.time)
        hot.append((node.key, node.hot))
    assert hot == [(MAIN, True), (A, True), (LEAF, True), (LEN, True)]
    assert not root.children[0].children[1].hot


def test_recursion_and_cycles_terminate() -> None:
    """A recursive function is not re-entered along a path; a pure cycle still has a root."""
    cyc = {
        A: (1, 2, 1.0, 2.0, {B: (1, 1, 1.0, 2.0)}),
        B: (1, 2, 1.0, 2.0, {A: (1, 1, 1.0, 2.0)}),
    }
    root = build_tree(cyc)
    assert len(root.children) == 1 and len(root.children[0].children) == 1
    assert root.children[0].children[0].children == []
    prof = CPUProfiler(log_level=None)
    prof.profile_function(recurse)(50)
    assert prof.last_report is not None
    assert build_tree(prof.last_report.stats).children


def test_tree_is_bounded() -> None:
    """max_nodes caps the frames of a wide profile."""
    wide = {MAIN: (1, 1, 0.0, 1000.0, {})}
    for i in range(5000):
        wide[("m.py", i, f"f{i}")] = (1, 1, 0.2, 0.2, {MAIN: (1, 1, 0.2, 0.2)})
    root = build_tree(wide, max_nodes=300, min_share=0.0)
    count = 0
    stack = [root]
    while stack:
        n = stack.pop()
        count += len(n.children)
        stack.extend(n.children)
    assert count == 300


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.append(dict(attrs))


def test_report_html_has_tree_icicle_and_table() -> None:
    """The report's HTML opens the hot path, escapes names, and loads nothing."""
    report = ProfileReport(STATS, label="demo")
    page = report._repr_html_()
    parsed = _Html()
    parsed.feed(page)
    assert parsed.tags.count("details") >= 3 and "svg" in parsed.tags
    hot_open = [a for a in parsed.attrs if "hot" in (a.get("class") or "") and "open" in a]
    assert len(hot_open) == 3  # main, handler_a, leaf (len is a leaf: no <details>)
    assert "&lt;built-in method builtins.len&gt;" in page and "<built-in" not in page
    assert "http" not in page and "src=" not in page
    assert page.count("<rect") >= 5  # main, a, b, leaf twice (len is too narrow under b?)


def test_html_honours_top() -> None:
    """The table shows the report's top rows, not every function."""
    prof = CPUProfiler(log_level=None, top=2)
    prof.profile_function(branch)(20, 5)
    report = prof.last_report
    assert report is not None and len(report) > 2
    assert f"showing 2 of {len(report)} functions" in report._repr_html_()


def test_empty_report_draws_nothing() -> None:
    """No calls, no pictures (and no error)."""
    assert pictures_html({}) == ""
    assert "<table" in ProfileReport({})._repr_html_()


def test_speedscope_export_matches_the_schema() -> None:
    """to_speedscope() is valid against speedscope's format and adds up to the profiled time."""
    jsonschema = pytest.importorskip("jsonschema")
    doc = ProfileReport(STATS, label="demo").to_speedscope()
    jsonschema.validate(doc, SPEEDSCOPE_SCHEMA)
    json.dumps(doc, allow_nan=False)
    prof = doc["profiles"][0]
    assert len(prof["samples"]) == len(prof["weights"])
    assert prof["endValue"] == pytest.approx(10.0)
    assert sum(prof["weights"]) == pytest.approx(10.0)
    names = [f["name"] for f in doc["shared"]["frames"]]
    stacks = {tuple(names[i] for i in s) for s in prof["samples"]}
    assert ("main", "handler_a", "leaf", "<built-in method builtins.len>") in stacks
    assert all(len(set(s)) == len(s) for s in prof["samples"])
    builtin = doc["shared"]["frames"][names.index("<built-in method builtins.len>")]
    assert "file" not in builtin


def test_speedscope_of_a_real_profile() -> None:
    """A real CPUProfiler report exports too, with our functions' files and lines."""
    jsonschema = pytest.importorskip("jsonschema")
    prof = CPUProfiler(log_level=None)
    prof.profile_function(branch)(200, 20)
    assert prof.last_report is not None
    doc = prof.last_report.to_speedscope()
    jsonschema.validate(doc, SPEEDSCOPE_SCHEMA)
    frames = {f["name"]: f for f in doc["shared"]["frames"]}
    assert frames["leaf"]["file"].endswith("workload.py") and frames["leaf"]["line"] > 0

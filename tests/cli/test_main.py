"""The command line's dispatch: a command builds only its own group's parser."""

from __future__ import annotations

import pytest

from safla_diag._cli import _group_of, build_parser, main


@pytest.mark.parametrize(
    ("argv", "group"),
    [
        (["logs", "scan", "x.log"], "logs"),
        (["-v", "mcp", "queue", "q.db"], "mcp"),
        (["-vv", "--color", "never", "deps"], "deps"),
        (["--colour", "always", "vector", "backup", "d"], "vector"),
        (["--color=never", "config", "show", "f"], "config"),
        (["--help"], None),
        (["--version"], None),
        (["-h", "logs"], None),
        (["nonsense", "logs"], None),  # the full parser names the bad command
        (["--", "logs"], None),
        ([], None),
    ],
)
def test_the_group_is_read_past_global_options(argv: list[str], group: str | None) -> None:
    """The command group comes after the global options (``--color`` takes a value)."""
    assert _group_of(argv) == group


def test_one_group_parses_as_the_full_parser_does() -> None:
    """A parser of one group reads that group's command lines as the full parser does."""
    argv = ["-v", "logs", "scan", "a.log", "--levels", "ERROR", "--top", "3", "--json"]
    full = vars(build_parser().parse_args(argv))
    one = vars(build_parser("logs").parse_args(argv))
    assert {k: v for k, v in one.items() if k != "func"} == {
        k: v for k, v in full.items() if k != "func"
    }


def test_an_unknown_command_lists_every_group(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad command still gets the full parser's one-line error, naming the real commands."""
    assert main(["nonsense"]) == 2
    err = capsys.readouterr().err
    for group in ("doctor", "logs", "mcp", "vector"):
        assert group in err

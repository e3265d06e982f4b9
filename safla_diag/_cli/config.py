"""`safla-diag config validate FILE` and `safla-diag config show FILE` (secrets redacted)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._redact import redact
from . import EXIT_FINDINGS, EXIT_OK

__all__ = ["register", "run_show", "run_validate"]


def register(sub: Any) -> None:
    """Add the `config` command group."""
    p: argparse.ArgumentParser = sub.add_parser(
        "config", help="validate or show a configuration file", description=__doc__
    )
    actions = p.add_subparsers(dest="config_command", metavar="ACTION")
    actions.required = True
    for name, func, text in (
        ("validate", run_validate, "report every problem of FILE (exit 1 when there are any)"),
        ("show", run_show, "print FILE with defaults filled in and secrets redacted"),
    ):
        a = actions.add_parser(name, help=text, description=text)
        a.add_argument("file", metavar="FILE", help="a .toml or .json configuration file")
        a.add_argument(
            "--env",
            action="store_true",
            help="apply SAFLA_<KEY> environment overrides, as a service would",
        )
        a.add_argument("--json", action="store_true", help="print JSON for machines")
        a.set_defaults(func=func)


def _load(args: argparse.Namespace) -> dict[str, Any]:
    from ..config import load_configuration  # on use: the other commands never load it

    # A file's own content unless --env: the shell of whoever runs this is not the service's.
    return load_configuration(args.file, environ=None if args.env else {})


def run_validate(args: argparse.Namespace) -> int:
    """Validate FILE: exit 0 when valid, 1 with the issues listed, 2 when it cannot be read."""
    from ..config import validate_configuration

    issues = validate_configuration(_load(args))
    name = redact(args.file)
    if args.json:
        print(json.dumps({"file": name, "valid": not issues, "issues": issues}, indent=2))
    elif issues:
        print(f"{name}: {len(issues)} issue{'s' if len(issues) != 1 else ''}")
        for issue in issues:
            print(f"  - {issue}")
    else:
        print(f"{name}: valid")
    return EXIT_FINDINGS if issues else EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    """Print FILE, validated and with defaults, secrets redacted; if invalid, only its issues (exit 1)."""
    from ..config import SaflaConfig, validate_configuration

    raw = _load(args)
    if issues := validate_configuration(raw):
        # Not shown: a malformed URL may hide a password where redact() cannot recognise it.
        sys.stderr.write(f"{redact(args.file)}: invalid, not shown; {len(issues)} issues:\n")
        for issue in issues:
            sys.stderr.write(f"  - {issue}\n")
        return EXIT_FINDINGS
    shown = SaflaConfig.from_mapping(raw).to_dict(redact=True)
    print(json.dumps(shown, indent=2) if args.json else to_toml(shown))
    return EXIT_OK


def to_toml(data: dict[str, Any]) -> str:
    """Render a configuration as TOML: scalars and arrays first, then tables; None is a comment."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in data.items():
        k = _key(key)
        if value is None:
            lines.append(f"# {k} is not set")
        elif isinstance(value, dict):
            tables += ["", f"[{k}]", *(f"{_key(sk)} = {_value(sv)}" for sk, sv in value.items())]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                tables += [
                    "",
                    f"[[{k}]]",
                    *(f"{_key(ik)} = {_value(iv)}" for ik, iv in item.items()),
                ]
        else:
            lines.append(f"{k} = {_value(value)}")
    return "\n".join(lines + tables)


def _key(key: object) -> str:
    text = str(key)
    return text if text and all(c.isalnum() or c in "_-" for c in text) else json.dumps(text)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value), ensure_ascii=False)

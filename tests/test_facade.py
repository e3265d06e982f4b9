"""The public contract: the names of API.md, importable from safla_diag, and a light import."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

import safla_diag

from .conftest import cli_env

# The names API.md lists. Never remove one; add new public names to EXTRA on purpose.
CONTRACT = {
    "SaflaDiagError", "ConfigurationError", "DependencyError", "PerformanceError",
    "MemoryPressureError", "IndexCorruptionError", "RecoveryError", "MCPRecoveryError", "redact",
    "validate_configuration", "load_configuration", "SaflaConfig",
    "check_dependencies", "DependencyReport", "check_external_services",
    "acheck_external_services", "ServiceReport", "ServiceResult",
    "CPUProfiler", "profile", "ProfileReport", "timed", "MemoryProfiler",
    "MemoryMonitor", "PerformanceMonitor", "MemoryLeakDetector", "LeakAnalysis",
    "VectorMemoryOptimizer",
    "VectorIndexRecovery", "IndexHealth", "BackupInfo",
    "MCPConnectionRecovery", "MCPTaskRecovery",
    "PerformanceDiagnostic", "Diagnostics", "DiagnosisReport",
    "analyze_logs", "LogReport",
}  # fmt: skip
EXTRA: set[str] = {
    "CgroupMemory",
    "Finding",
    "GCCounts",
    "GuideImport",
    "HealPolicy",
    "LogTemplate",
    "LoopStats",
    "MemoryInfo",
    "PerformanceStats",
    "ProfileRow",
    "QueueStats",
    "SectionResult",
    "SystemMemoryInfo",
    "LoopMonitor",
    "MCPServer",
    "MemoryGrowth",
    "MemoryOptimization",
    "OutcomeUnknown",
    "PackageStatus",
    "QueueStoreError",
    "RecoveringSession",
    "ServerUnavailable",
    "asgi_app",
    "aanalyze_logs",
    "mine_templates",
    "register_opentelemetry",
    "register_prometheus",
    "serve",
}


def test_all_is_exactly_the_contract() -> None:
    """__all__ lists the contract's names plus the ones we add on purpose, sorted."""
    assert set(safla_diag.__all__) == CONTRACT | EXTRA
    assert list(safla_diag.__all__) == sorted(safla_diag.__all__)
    for name in safla_diag.__all__:
        assert getattr(safla_diag, name) is not None


@pytest.mark.parametrize(
    "layer",
    [
        "config",
        "checks",
        "profiling",
        "monitoring",
        "vector",
        "mcp_retry",
        "heal",
        "diagnosis",
        "logs",
        "live",
    ],
)
def test_layers_export_subsets_of_the_facade(layer: str) -> None:
    """Each layer's __all__ is part of the facade, and the facade re-exports the same objects."""
    module = importlib.import_module(f"safla_diag.{layer}")
    assert set(module.__all__) <= set(safla_diag.__all__)
    for name in module.__all__:
        assert getattr(safla_diag, name) is getattr(module, name)


def test_error_tree() -> None:
    """The error hierarchy of API.md, builtins included."""
    e = safla_diag
    for cls in (e.ConfigurationError, e.DependencyError, e.PerformanceError,
                e.MemoryPressureError, e.IndexCorruptionError, e.RecoveryError):  # fmt: skip
        assert issubclass(cls, e.SaflaDiagError)
    assert issubclass(e.ConfigurationError, ValueError)
    assert issubclass(e.MCPRecoveryError, e.RecoveryError)
    assert issubclass(e.MCPRecoveryError, ConnectionError)
    assert e.MemoryPressureError is not MemoryError
    assert not issubclass(e.MemoryPressureError, MemoryError)
    assert issubclass(e.QueueStoreError, e.RecoveryError)
    assert issubclass(e.ServerUnavailable, e.MCPRecoveryError)
    assert issubclass(e.OutcomeUnknown, e.MCPRecoveryError)


def test_errors_show_the_public_module() -> None:
    """Every exported error reprs as safla_diag.X, where users import it from."""
    for name in safla_diag.__all__:
        obj = getattr(safla_diag, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert obj.__module__ == "safla_diag", name


def test_performance_error_declares_its_data() -> None:
    """kind and stats are constructor arguments, not attributes patched on afterwards."""
    err = safla_diag.PerformanceError("slow", kind="p95", stats={"p95_response_time": 2.0})
    assert (err.kind, err.stats) == ("p95", {"p95_response_time": 2.0})
    assert safla_diag.PerformanceError("slow").kind is None


def test_configuration_error_carries_every_issue() -> None:
    """Built from a list it keeps them all; from a string it holds one."""
    err = safla_diag.ConfigurationError(["a: bad", "b: worse"])
    assert err.issues == ("a: bad", "b: worse")
    assert "a: bad" in str(err) and "b: worse" in str(err)
    assert safla_diag.ConfigurationError("only one").issues == ("only one",)


def test_import_is_light() -> None:
    """Importing the package loads neither faiss nor numpy nor any optional extra."""
    code = (
        "import sys, safla_diag; "
        "heavy = [m for m in ('faiss', 'numpy', 'psycopg', 'prometheus_client', 'IPython', "
        "'opentelemetry', 'mcp', 'xxhash', 'rich') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), check=True
    )
    assert out.stdout.strip() == ""


def test_version_is_a_string() -> None:
    """__version__ is lazy and always a string."""
    assert isinstance(safla_diag.__version__, str)
    with pytest.raises(AttributeError):
        _ = safla_diag.no_such_name  # type: ignore[attr-defined]


def test_package_logger_has_only_a_null_handler() -> None:
    """The library adds exactly one handler, a NullHandler, to its own logger."""
    import logging

    handlers = logging.getLogger("safla_diag").handlers
    assert [type(h) for h in handlers] == [logging.NullHandler]


def test_layers_load_on_first_use() -> None:
    """`import safla_diag` loads no layer (nor asyncio); using a name loads just its layer."""
    code = (
        "import sys, safla_diag\n"
        "def layers(): return sorted(m.split('.')[1] for m in sys.modules\n"
        "    if m.count('.') == 1 and m.startswith('safla_diag.') and not m.split('.')[1].startswith('_'))\n"
        "print(layers(), 'asyncio' in sys.modules)\n"
        "safla_diag.validate_configuration({})\n"
        "print(layers())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), check=True
    )
    first, second = out.stdout.splitlines()
    assert first == "[] False"
    assert second == "['config']"


def test_every_lazy_name_resolves_to_its_layer() -> None:
    """The facade's lazy table names the layer that really defines each public name."""
    lazy = safla_diag._LAZY
    assert set(lazy) | {n for n in safla_diag.__all__ if n not in lazy} == set(safla_diag.__all__)
    for name, layer in lazy.items():
        module = importlib.import_module(f"safla_diag.{layer}")
        assert name in module.__all__


def test_the_error_tree_is_drawn_and_exported() -> None:
    """Every error of _errors.py is in the tree of its docstring, under SaflaDiagError, as safla_diag.X."""
    from safla_diag import _errors

    assert _errors.__doc__ is not None
    drawn = set(re.findall(r"(\w+)\(\w+", _errors.__doc__))
    assert drawn == set(_errors.__all__)
    for name in _errors.__all__:
        cls = getattr(safla_diag, name)
        assert issubclass(cls, safla_diag.SaflaDiagError)
        assert cls.__module__ == "safla_diag"
        assert repr(cls) == f"<class 'safla_diag.{name}'>"


def test_stats_dicts_have_exactly_their_typed_keys() -> None:
    """The TypedDicts are plain dicts at run time whose keys are exactly the declared ones."""
    perf = safla_diag.PerformanceMonitor()
    perf.record_request(0.2)
    readings = [
        (perf.get_performance_stats(), safla_diag.PerformanceStats),
        (safla_diag.PerformanceMonitor().get_performance_stats(), safla_diag.PerformanceStats),
        (safla_diag.LoopMonitor().stats(), safla_diag.LoopStats),
        (safla_diag.MemoryMonitor().get_memory_info(), safla_diag.MemoryInfo),
        (safla_diag.MemoryProfiler().get_system_memory_info(), safla_diag.SystemMemoryInfo),
    ]
    for value, typed in readings:
        assert type(value) is dict, typed
        assert set(value) == typed.__required_keys__, typed
    system = readings[-1][0]
    assert set(system["gc_stats"]) == safla_diag.GCCounts.__required_keys__
    # a copy: the monitor's cached window statistics cannot be changed through it
    first = perf.get_performance_stats()
    first["total_requests"] = -1
    assert perf.get_performance_stats()["total_requests"] == 1

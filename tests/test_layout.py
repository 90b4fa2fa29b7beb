"""The house rules that keep the layout readable: the service stands alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_service_imports_no_simulator_dashboard_or_test_code() -> None:
    probe = ("import sys, collector.app, collector.cli; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'simulators', 'dashboards', 'security', 'tests', 'bench'}))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_no_module_of_the_service_names_another_part() -> None:
    """Only the command modules of the other parts may use the service, not the reverse."""
    offenders = []
    for path in (ROOT / "collector").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names
                          if name.split(".")[0] in ("simulators", "dashboards", "security",
                                                    "tests", "bench")]
    assert offenders == []


def test_every_part_registers_its_commands() -> None:
    from collector.cli import parser
    commands = parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"collect", "deadletter", "alerts", "kpi", "detect", "simulate", "registry",
            "demo", "dashboards", "report", "security"} <= set(commands)

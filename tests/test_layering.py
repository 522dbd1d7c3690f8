"""Packages keep to their lanes: processes import only the shared packages, never each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROCESS_PACKAGES = ("gateway", "ingest", "api", "firmware_sim", "dashboards")
SHARED_PACKAGES = ("contract", "alerting", "mqttlink", "runtime")
ALL_PACKAGES = (*SHARED_PACKAGES, *PROCESS_PACKAGES, "gramlink")


def imported_packages(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found & set(ALL_PACKAGES)


@pytest.mark.parametrize("package", PROCESS_PACKAGES)
def test_process_packages_import_only_shared_packages(package: str) -> None:
    assert imported_packages(package) <= {*SHARED_PACKAGES, package}


def test_contract_imports_no_other_package() -> None:
    assert imported_packages("contract") <= {"contract"}


def test_runtime_imports_no_other_package() -> None:
    assert imported_packages("runtime") <= {"runtime"}


def test_mqttlink_imports_only_contract_and_runtime() -> None:
    assert imported_packages("mqttlink") <= {"contract", "runtime", "mqttlink"}


def test_alerting_imports_only_contract() -> None:
    assert imported_packages("alerting") <= {"contract", "alerting"}

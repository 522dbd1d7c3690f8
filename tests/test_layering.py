"""The packages keep to their lanes: everyone imports contract, nobody imports each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROCESS_PACKAGES = ("gateway", "ingest", "api", "firmware_sim", "dashboards")
ALL_PACKAGES = ("contract", *PROCESS_PACKAGES, "gramlink")


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
def test_process_packages_import_only_contract(package: str) -> None:
    assert imported_packages(package) <= {"contract", package}


def test_contract_imports_no_other_package() -> None:
    assert imported_packages("contract") <= {"contract"}

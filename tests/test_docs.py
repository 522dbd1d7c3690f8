"""Every setting of every process is in the README's configuration table."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from api.alerts.settings import AlertsSettings
from api.settings import ApiSettings
from firmware_sim.settings import SimSettings
from gateway.settings import GatewaySettings
from ingest.settings import IngestSettings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize(
    "settings", [GatewaySettings, IngestSettings, ApiSettings, SimSettings, AlertsSettings]
)
def test_every_setting_is_in_the_readme(settings: type[BaseSettings]) -> None:
    prefix = settings.model_config["env_prefix"]
    missing = [
        f"{prefix}{name.upper()}"
        for name in settings.model_fields
        if f"`{prefix}{name.upper()}`" not in README and f" {prefix}{name.upper()} " not in README
    ]
    assert missing == []

"""How the API reaches the central broker: one endpoint, one admin login, one TLS setup.

Every MQTT connection of the API (the dynsec admin session, presence, the
broker-files login probe) is built from one :class:`BrokerAccess`, so
``mqtts://`` with ``GRAMLINK_API_MQTT_CA_FILE`` (and an optional client
certificate) applies to all of them, and a refusal names the API's own settings.

At start the API waits for its admin session (:func:`wait_up`); instead of a
traceback it stops with :class:`BrokerStartError`: one line and an exit code
(3 the broker did not answer or its certificate is not trusted, 4 it refused
the admin login).
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

from mqttlink.endpoint import Endpoint, TlsFiles, tls_context
from mqttlink.paho_link import LinkOptions, MqttLink
from mqttlink.reasons import SettingNames
from runtime.exits import ExitCode

ENV_PREFIX = "GRAMLINK_API_"


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


NAMES = SettingNames(
    url=env_name("mqtt_url"),
    username=env_name("mqtt_admin_user"),
    password=env_name("mqtt_admin_password"),
    ca_file=env_name("mqtt_ca_file"),
)


class BrokerStartError(RuntimeError):
    """The broker was not usable at start; ``line`` says why and which setting to check."""

    def __init__(self, line: str, exit_code: ExitCode) -> None:
        super().__init__(line)
        self.line = line
        self.exit_code = exit_code


@dataclass(frozen=True)
class BrokerAccess:
    endpoint: Endpoint
    username: str
    password: str
    tls: TlsFiles
    timeout_s: float = 10.0
    names: SettingNames = NAMES

    def link_options(self, name: str, client_id: str) -> LinkOptions:
        """A clean session (the API's clients keep no state on the broker)."""
        return LinkOptions(
            name=name,
            endpoint=self.endpoint,
            client_id=client_id,
            names=self.names,
            username=self.username,
            password=self.password,
            tls=self.tls,
            clean_start=True,
            session_expiry_s=0,
            max_inflight=100,
            backoff_min_s=0.2,
            backoff_max_s=10.0,
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """For one-shot connections (the login probe); None for ``mqtt://``."""
        return tls_context(self.tls) if self.endpoint.tls else None


def wait_up(link: MqttLink, timeout_s: float) -> None:
    """Wait for ``link``'s first session; raise :class:`BrokerStartError` if it does not come."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if link.refusal is not None:
            raise BrokerStartError(link.refusal.line, link.refusal.exit_code)
        if link.failure is not None:
            raise BrokerStartError(link.failure, ExitCode.INTERNAL)
        if link.connected.wait(0.05):
            return
    if link.refusal is not None:
        raise BrokerStartError(link.refusal.line, link.refusal.exit_code)
    url, names = link.url, link.options.names
    if link.certificate_refused:
        line = (
            f"the MQTT broker at {url} presented a certificate that the CA in "
            f"{names.ca_file} did not sign ({link.last_failure}); check {names.ca_file}"
        )
    else:
        line = (
            f"the MQTT broker at {url} did not answer in {timeout_s:g} s "
            f"({link.last_failure or 'no answer'}); check {names.url}"
        )
    raise BrokerStartError(line, ExitCode.DEPENDENCY_DOWN)

"""A broker address (``mqtt://host:port`` or ``mqtts://host:port``) and the TLS files to reach it.

:func:`tls_context` builds the client's ``ssl.SSLContext`` once, at start; an
unreadable or invalid file raises :class:`TlsFileError` naming the setting, so
the process stops with one line. A broker certificate that the configured CA
did not sign fails later, at connect (:func:`is_certificate_refusal`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883


class EndpointError(ValueError):
    """A broker URL that is not ``mqtt://`` or ``mqtts://`` with a host."""


class TlsFileError(ValueError):
    """A CA, certificate or key file that cannot be used; ``setting`` names where it came from."""

    def __init__(self, setting: str, detail: str) -> None:
        super().__init__(f"{setting}: {detail}")
        self.setting = setting


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise EndpointError(f"not an mqtt:// or mqtts:// URL: {url!r}")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port
        except ValueError as exc:
            raise EndpointError(f"bad port in {url!r}") from exc
        return cls(parts.hostname, port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT), tls)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def _broker_url(value: str) -> str:
    try:
        Endpoint.parse(value)
    except EndpointError:
        raise ValueError("must look like mqtt://host:port or mqtts://host:port") from None
    return value


def _readable(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"{value} is not a readable file")
    return value


# Setting types, checked when the settings load (so a process stops at start,
# naming the setting): a broker URL, and a PEM file that must exist when set.
BrokerUrl = Annotated[str, AfterValidator(_broker_url)]
PemFile = Annotated[Path | None, AfterValidator(_readable)]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for ``mqtts://``, with the names of the settings they came from."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_setting: str = "ca_file"
    cert_setting: str = "cert_file"
    key_setting: str = "key_file"

    @classmethod
    def named(
        cls,
        ca_file: Path | None,
        cert_file: Path | None,
        key_file: Path | None,
        *,
        prefix: str,
        suffix: str = "",
    ) -> TlsFiles:
        """Files from the settings ``{prefix}CA_FILE{suffix}``, ``{prefix}CERT_FILE{suffix}``
        and ``{prefix}KEY_FILE{suffix}`` (e.g. ``GRAMLINK_INGEST_MQTT_`` or ``--``)."""
        return cls(
            ca_file,
            cert_file,
            key_file,
            ca_setting=f"{prefix}CA_FILE{suffix}",
            cert_setting=f"{prefix}CERT_FILE{suffix}",
            key_setting=f"{prefix}KEY_FILE{suffix}",
        )


def tls_context(files: TlsFiles) -> ssl.SSLContext:
    """A client context trusting ``files.ca_file`` (else the system's CAs), with an optional
    client certificate; raises :class:`TlsFileError` naming the setting at fault."""
    if files.ca_file is not None and not files.ca_file.is_file():
        raise TlsFileError(files.ca_setting, f"no such file {files.ca_file}")
    try:
        context = ssl.create_default_context(
            cafile=str(files.ca_file) if files.ca_file is not None else None
        )
    except ssl.SSLError as exc:
        raise TlsFileError(files.ca_setting, f"not a PEM CA certificate: {exc}") from exc
    if (files.cert_file is None) != (files.key_file is None):
        setting = files.key_setting if files.key_file is None else files.cert_setting
        raise TlsFileError(setting, "a client certificate needs both a certificate and a key")
    if files.cert_file is not None and files.key_file is not None:
        for path, setting in (
            (files.cert_file, files.cert_setting),
            (files.key_file, files.key_setting),
        ):
            if not path.is_file():
                raise TlsFileError(setting, f"no such file {path}")
        try:
            context.load_cert_chain(str(files.cert_file), str(files.key_file))
        except ssl.SSLError as exc:
            raise TlsFileError(
                files.cert_setting, f"certificate and key do not load: {exc}"
            ) from exc
    return context


def is_certificate_refusal(exc: BaseException) -> bool:
    """True when a connect failed because the broker's certificate was not trusted."""
    return isinstance(exc, ssl.SSLCertVerificationError)

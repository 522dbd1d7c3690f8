"""Broker URLs and TLS files: parsed once, bad ones named by their setting."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from mqttlink.endpoint import (
    Endpoint,
    EndpointError,
    TlsFileError,
    TlsFiles,
    is_certificate_refusal,
    tls_context,
)
from tests.tls import Pki


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", Endpoint("broker", 1883, False)),
        ("mqtts://broker", Endpoint("broker", 8883, True)),
        ("mqtts://10.0.0.5:9883", Endpoint("10.0.0.5", 9883, True)),
        ("mqtt://[::1]:1884", Endpoint("::1", 1884, False)),
    ],
)
def test_urls_give_host_port_and_tls(url: str, expected: Endpoint) -> None:
    assert Endpoint.parse(url) == expected


@pytest.mark.parametrize("url", ["http://broker", "mqtt://", "broker:1883", "mqtt://h:99999"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(EndpointError):
        Endpoint.parse(url)


def test_an_endpoint_prints_as_its_url() -> None:
    assert str(Endpoint.parse("mqtts://b")) == "mqtts://b:8883"


def _files(**paths: Path | None) -> TlsFiles:
    return TlsFiles(
        **paths, ca_setting="X_CA_FILE", cert_setting="X_CERT_FILE", key_setting="X_KEY_FILE"
    )


def test_a_context_trusts_the_given_ca_and_loads_a_client_certificate(pki: Pki) -> None:
    context = tls_context(
        _files(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    )
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "gramlink-test-ca"),),)
    ]


def test_missing_and_invalid_files_name_their_setting(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("junk")
    cases = [
        (_files(ca_file=tmp_path / "none.pem"), "X_CA_FILE"),
        (_files(ca_file=junk), "X_CA_FILE"),
        (_files(cert_file=pki.client_cert), "X_KEY_FILE"),
        (_files(key_file=pki.client_key), "X_CERT_FILE"),
        (_files(cert_file=pki.client_cert, key_file=pki.key), "X_CERT_FILE"),  # not a pair
        (_files(cert_file=junk, key_file=pki.client_key), "X_CERT_FILE"),
    ]
    for files, setting in cases:
        with pytest.raises(TlsFileError) as caught:
            tls_context(files)
        assert caught.value.setting == setting
        assert str(caught.value).startswith(f"{setting}: ")


def test_only_a_verification_failure_is_a_certificate_refusal() -> None:
    assert is_certificate_refusal(ssl.SSLCertVerificationError("unknown ca"))
    assert not is_certificate_refusal(ConnectionRefusedError())
    assert not is_certificate_refusal(ssl.SSLError("handshake"))

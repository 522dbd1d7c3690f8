"""Session fixtures: a real Mosquitto and a real InfluxDB on free loopback ports.

Both are started through the same code as ``gramlink stack up`` and stopped at
the end of the session. Tests that stop or kill a service (outages) make their
own with ``broker_factory`` / ``influx_factory`` instead of touching these.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gramlink.services import InfluxService, MosquittoService
from gramlink.services.mosquitto import TlsListener
from gramlink.services.process import free_port
from runtime.logs import stop_flushing
from tests.tls import Pki, make_pki

BrokerFactory = Callable[..., MosquittoService]
InfluxFactory = Callable[[], InfluxService]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Test certificates made by openssl (``tests/tls.py``)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def broker_factory(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[BrokerFactory]:
    started: list[MosquittoService] = []

    def make(
        *,
        login_files: bool = False,
        tls: bool = False,
        client_certs: bool = False,
        centre: bool = False,
    ) -> MosquittoService:
        """A broker; ``login_files`` makes it central (the API's password/ACL files);
        ``tls`` adds a TLS listener (``broker.tls_url``) with a certificate of the
        session's ``pki``; ``client_certs`` makes that listener require client certificates;
        ``centre`` a centre broker running the shipped ``centre_broker.conf``."""
        home = tmp_path_factory.mktemp("mosquitto")
        listener = None
        if tls:
            client_ca = pki.ca if client_certs else None
            listener = TlsListener(free_port(), pki.cert, pki.key, client_ca)
        broker = MosquittoService(
            home,
            free_port(),
            secrets.token_urlsafe(16),
            login_files=login_files,
            tls=listener,
            centre=centre,
        )
        broker.start()
        started.append(broker)
        return broker

    yield make
    for broker in reversed(started):
        broker.stop()


@pytest.fixture(scope="session")
def influx_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxFactory]:
    started: list[InfluxService] = []

    def make() -> InfluxService:
        home: Path = tmp_path_factory.mktemp("influxdb")
        influx = InfluxService(home, free_port(), secrets.token_urlsafe(16))
        influx.start()
        started.append(influx)
        return influx

    yield make
    for influx in reversed(started):
        influx.stop()


SHARED_BROKERS: list[MosquittoService] = []


@pytest.fixture(scope="session")
def mosquitto(broker_factory: BrokerFactory) -> MosquittoService:
    """The shared central broker; use a unique centre id per test."""
    broker = broker_factory(login_files=True)
    SHARED_BROKERS.append(broker)
    return broker


@pytest.fixture(scope="session")
def tls_mosquitto(broker_factory: BrokerFactory) -> MosquittoService:
    """A central broker with a TLS listener too (``tls_url``), shared; unique centre per test."""
    broker = broker_factory(login_files=True, tls=True)
    SHARED_BROKERS.append(broker)
    return broker


@pytest.fixture(autouse=True)
def no_log_flushing_after_the_test() -> Iterator[None]:
    """A test that ran an entry point in-process started the log-flushing thread: it would
    go on writing into streams the test closed (and print tracebacks, which parse source
    with ``ast`` in that thread: CPython 3.11's AST state is not thread-safe)."""
    yield
    stop_flushing()


@pytest.fixture(autouse=True)
def shared_brokers_alive(request: pytest.FixtureRequest) -> None:
    """Debian 12's Mosquitto 2.0.11 has segfaulted on a shared broker of a long run
    (each time a second after it expired about a hundred sessions at once; see
    deploy/README.md). No test stops a shared broker, so one that is gone
    crashed: it is started again on its port and home, with a warning that names
    the test it would otherwise have failed, instead of failing every test after it."""
    for broker in SHARED_BROKERS:
        if broker.running():
            continue
        exit_code = broker.process.exit_code()
        warnings.warn(
            f"the shared broker on port {broker.port} was gone (exit {exit_code}) "
            f"before {request.node.nodeid}: started again",
            stacklevel=1,
        )
        broker.start()


@pytest.fixture(scope="session")
def influx(influx_factory: InfluxFactory) -> InfluxService:
    """The shared InfluxDB; use a unique measurement/centre per test."""
    return influx_factory()

"""Service accounts on the central broker: one dynamic-security login per process kind,
with exactly the rights that process needs (and the dynsec admin kept for the API).

``ingest``: subscribes to the data channels through its share group
(``$share/<group>/gl/v1/+/+/{_gateway/batch,telemetry,event}``) and to the
retained births (``gl/v1/+/+/state``), receives those topics and nothing else,
publishes only storage receipts to gateways (``gl/v1/+/+/_gateway/receipt``;
``defaultACLAccess`` denies every other publish and, in the stack's broker,
receiving).

``alerts``: the alert engine reads the same data channels with a plain (not
shared) subscription of its own, and the births, and the alerts the centres'
gateways raised (``_gateway/alert``); it publishes nothing. It logs in twice
with the one account (client ids ``gl-alerts-{host}`` and ``...-edge``): the
role does not tie the login to a client id.

``tablet`` (on a centre's own broker, :func:`tablet_account`): a tablet or
display at the centre follows the alerts the gateway raised there
(``gl/v1/{centre}/+/_gateway/alert/+``, retained) and, if asked, the centre's
readings (``gl/v1/{centre}/+/{telemetry,event}``); it publishes nothing and
may subscribe to nothing else (no other centre, no device's commands or
credentials, no ``$CONTROL``).

:func:`ensure_account` makes a broker hold an account exactly so, idempotently:
the role is created or its ACLs corrected, the client created or given the new
password, the one role and re-enabled. It talks to Mosquitto's
``$CONTROL/dynamic-security/v1`` topic as the dynsec admin, so it works on a
local stack and on a remote broker alike.

Errors: :class:`AccountError` (permanent for this call: the broker is not
reachable, refused the admin, did not answer, or refused a command); one line.
"""

from __future__ import annotations

import json
import queue
import secrets
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import paho.mqtt.client as mqtt

from contract.edge import alert_filter, local_alert_filter
from contract.receipts import receipt_filter
from contract.topics import PREFIX, Channel, check_id, shared, subscription
from mqttlink.endpoint import Endpoint, TlsFiles, tls_context

CONTROL: Final = "$CONTROL/dynamic-security/v1"
RESPONSE: Final = f"{CONTROL}/response"
INGEST_DATA: Final = (Channel.GATEWAY_BATCH, Channel.TELEMETRY, Channel.EVENT)
ALERTS_READ: Final = (Channel.GATEWAY_BATCH, Channel.TELEMETRY, Channel.EVENT, Channel.STATE)
ACCOUNT_KINDS: Final = ("ingest", "alerts")


class AccountError(RuntimeError):
    """The account could not be made (one line for the operator)."""


@dataclass(frozen=True)
class Acl:
    acltype: str  # subscribeLiteral, publishClientReceive, ...
    topic: str

    def as_dict(self) -> dict[str, Any]:
        return {"acltype": self.acltype, "topic": self.topic, "priority": 0, "allow": True}


@dataclass(frozen=True)
class ServiceAccount:
    username: str
    rolename: str
    acls: tuple[Acl, ...]


def ingest_account(username: str = "ingest", share_group: str = "ingest") -> ServiceAccount:
    """What an ingest worker needs: its shared data subscriptions and the births."""
    data = [subscription(channel) for channel in INGEST_DATA]
    state = subscription(Channel.STATE)
    acls = [Acl("subscribeLiteral", shared(share_group, f)) for f in data]
    acls.append(Acl("subscribeLiteral", state))
    acls += [Acl("publishClientReceive", f) for f in [*data, state]]
    acls.append(Acl("publishClientSend", receipt_filter()))
    return ServiceAccount(username, f"gl-{username}", tuple(acls))


def alerts_account(username: str = "alerts") -> ServiceAccount:
    """What the alert engine needs: every data channel, the births and the alerts the
    centres' gateways raised (``_gateway/alert``), read only."""
    topics = [subscription(channel) for channel in ALERTS_READ] + [alert_filter()]
    acls = [Acl("subscribeLiteral", t) for t in topics]
    acls += [Acl("publishClientReceive", t) for t in topics]
    return ServiceAccount(username, f"gl-{username}", tuple(acls))


def tablet_account(centre: str, username: str = "tablet", readings: bool = False) -> ServiceAccount:
    """A centre tablet's or display's login on the centre broker: read only.

    ``subscribePattern`` lets it subscribe to the filter or to a narrower one (one
    gateway, one alert); ``publishClientReceive`` is what the centre broker's
    ``defaultACLAccess`` (deny) needs to deliver; nothing may be published. The
    role is per centre (``gl-tablet:{centre}``): device logins are ``centre/device``
    and roles ``gl-{device}`` (no ``:`` in an id), so neither can clash with it.
    """
    topics = [local_alert_filter(centre)]
    if readings:
        c = check_id(centre, "centre")
        topics += [f"{PREFIX}/{c}/+/{ch.value}" for ch in (Channel.TELEMETRY, Channel.EVENT)]
    acls = [Acl("subscribePattern", t) for t in topics]
    acls += [Acl("publishClientReceive", t) for t in topics]
    return ServiceAccount(username, f"gl-tablet:{centre}", tuple(acls))


def account_for(kind: str, username: str, share_group: str = "ingest") -> ServiceAccount:
    """The account of a process kind (one of ``ACCOUNT_KINDS``)."""
    if kind == "alerts":
        return alerts_account(username)
    return ingest_account(username, share_group)


def new_password() -> str:
    return secrets.token_urlsafe(24)


class DynsecSession:
    """One admin connection sending dynsec commands and waiting for each answer."""

    def __init__(
        self,
        url: str,
        admin_user: str,
        admin_password: str,
        tls: TlsFiles | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._endpoint = Endpoint.parse(url)
        self._timeout = timeout_s
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self._connected: queue.Queue[str | None] = queue.Queue()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"gl-accounts-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(admin_user, admin_password)
        self._tls = tls_context(tls or TlsFiles()) if self._endpoint.tls else None
        if self._tls is not None:
            self._client.tls_set_context(self._tls)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def __enter__(self) -> DynsecSession:
        try:
            self._client.connect(self._endpoint.host, self._endpoint.port, keepalive=30)
        except OSError as exc:
            raise AccountError(f"broker {self._endpoint} not reachable: {exc}") from exc
        self._client.loop_start()
        try:
            failure = self._connected.get(timeout=self._timeout)
        except queue.Empty:
            failure = f"no answer from {self._endpoint} within {self._timeout:.0f} s"
        if failure is not None:
            self.__exit__(None, None, None)
            raise AccountError(failure)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # paho's network thread
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self._connected.put(f"broker {self._endpoint} refused the dynsec admin: {rc}")
            return
        client.subscribe(RESPONSE, qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _m: int, codes: Any, _p: Any) -> None:
        refused = [str(code) for code in codes if code.is_failure]
        self._connected.put(
            f"the login may not administer dynamic security: {', '.join(refused)}"
            if refused
            else None
        )

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._answers.put(json.loads(msg.payload))
        except ValueError:
            return

    def accepts(self, username: str, password: str) -> bool:
        """Whether the broker lets ``username`` in with ``password`` right now."""
        probe = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"gl-probe-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv5,
        )
        probe.username_pw_set(username, password)
        if self._endpoint.tls:
            probe.tls_set_context(self._tls)
        outcome: queue.Queue[bool] = queue.Queue()
        probe.on_connect = lambda _c, _u, _f, rc, _p: outcome.put(not rc.is_failure)
        try:
            probe.connect(self._endpoint.host, self._endpoint.port, keepalive=10)
        except OSError:
            return False
        probe.loop_start()
        try:
            return outcome.get(timeout=self._timeout)
        except queue.Empty:
            return False
        finally:
            probe.disconnect()
            probe.loop_stop()

    def command(self, command: str, **fields: Any) -> dict[str, Any]:
        """Run one command; its response (with ``error`` when the broker refused it).

        Every admin connection receives every response, so each command carries a
        ``correlationData`` of its own and other sessions' answers are passed over.
        """
        tag = secrets.token_hex(8)
        body = {"commands": [{"command": command, "correlationData": tag, **fields}]}
        info = self._client.publish(CONTROL, json.dumps(body), qos=1)
        info.wait_for_publish(self._timeout)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise AccountError(f"{command}: could not send ({mqtt.error_string(info.rc)})")
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                answer = self._answers.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise AccountError(
                    f"{command}: no answer from dynamic security within {self._timeout:.0f} s"
                ) from None
            for response in answer.get("responses", []):
                if isinstance(response, dict) and response.get("correlationData") == tag:
                    return response

    def must(self, command: str, **fields: Any) -> dict[str, Any]:
        response = self.command(command, **fields)
        if "error" in response:
            raise AccountError(f"{command} refused: {response['error']}")
        return response


def ensure_account(session: DynsecSession, account: ServiceAccount, password: str) -> list[str]:
    """Make the broker hold ``account`` exactly, with ``password``; returns what changed."""
    changed: list[str] = []
    wanted = {(a.acltype, a.topic): a for a in account.acls}
    role = session.command("getRole", rolename=account.rolename)
    if "error" in role:
        session.must(
            "createRole",
            rolename=account.rolename,
            acls=[a.as_dict() for a in account.acls],
        )
        changed.append(f"created role {account.rolename}")
    else:
        present = {(a["acltype"], a["topic"]) for a in role["data"]["role"].get("acls", [])}
        for acltype, topic in present - wanted.keys():
            session.must("removeRoleACL", rolename=account.rolename, acltype=acltype, topic=topic)
            changed.append(f"removed {acltype} {topic} from role {account.rolename}")
        for key in wanted.keys() - present:
            session.must("addRoleACL", rolename=account.rolename, **wanted[key].as_dict())
            changed.append(f"added {key[0]} {key[1]} to role {account.rolename}")
    client = session.command("getClient", username=account.username)
    if "error" in client:
        session.must(
            "createClient",
            username=account.username,
            password=password,
            roles=[{"rolename": account.rolename}],
        )
        changed.append(f"created client {account.username}")
        return changed
    data = client["data"]["client"]
    if not session.accepts(account.username, password):  # a change kicks a connected client
        session.must("setClientPassword", username=account.username, password=password)
        changed.append(f"set the password of client {account.username}")
    for held in data.get("roles", []):
        if held["rolename"] != account.rolename:
            session.must("removeClientRole", username=account.username, rolename=held["rolename"])
            changed.append(f"removed role {held['rolename']} from client {account.username}")
    if account.rolename not in {held["rolename"] for held in data.get("roles", [])}:
        session.must("addClientRole", username=account.username, rolename=account.rolename)
    for group in data.get("groups", []):
        session.must("removeGroupClient", groupname=group["groupname"], username=account.username)
        changed.append(f"removed client {account.username} from group {group['groupname']}")
    if data.get("disabled"):
        session.must("enableClient", username=account.username)
    return changed

"""IoT Hub device-to-cloud messages (azure-iot-device): each car is its own device identity.

Identities come from one of two places:

* `PITSTOP_IOTHUB_DEVICES`: a JSON object mapping car_id -> device connection string
  (`HostName=<hub>.azure-devices.net;DeviceId=...;SharedAccessKey=...`), or the path of a
  file holding that JSON.
* Device Provisioning Service with a symmetric-key group enrollment: set
  `PITSTOP_DPS_ID_SCOPE` and `PITSTOP_DPS_GROUP_KEY` (the enrollment group's primary key;
  optional `PITSTOP_DPS_HOST`, default global.azure-devices-provisioning.net). Each car
  registers as device `car_id` with a key derived from the group key (HMAC-SHA256 of the
  registration id), the way DPS group enrollments expect, and is assigned to a hub by DPS.

Messages carry content type application/json and encoding utf-8 so IoT Hub message
routing can query their body, and a `topic` application property naming the stream.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simulator.errors import SimulatorError, redact
from simulator.sinks.base import CountingSink
from simulator.sinks.retry import retry_call

_LOG = logging.getLogger(__name__)

IOTHUB_DEVICES_ENV = "PITSTOP_IOTHUB_DEVICES"
DPS_SCOPE_ENV = "PITSTOP_DPS_ID_SCOPE"
DPS_KEY_ENV = "PITSTOP_DPS_GROUP_KEY"
DPS_HOST_ENV = "PITSTOP_DPS_HOST"
DPS_DEFAULT_HOST = "global.azure-devices-provisioning.net"
_UNHEALTHY_AFTER = 20  # consecutive messages lost after all retries


def derive_device_key(group_key: str, registration_id: str) -> str:
    """A device's symmetric key for a DPS group enrollment: base64(HMAC-SHA256(key, id))."""
    try:
        secret = base64.b64decode(group_key, validate=True)
    except ValueError:
        raise SimulatorError(f"{DPS_KEY_ENV} is not a base64 key.") from None
    digest = hmac.new(secret, registration_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def read_device_map(raw: str | None) -> dict[str, str]:
    """car_id -> device connection string from the JSON (or JSON file) in the env var."""
    if not raw or not raw.strip():
        raise SimulatorError(
            f"The iothub sink needs device identities: set {IOTHUB_DEVICES_ENV} to a JSON map "
            f"car_id -> device connection string, or {DPS_SCOPE_ENV} and {DPS_KEY_ENV}."
        )
    text = raw.strip()
    if not text.startswith("{"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise SimulatorError(
                f"{IOTHUB_DEVICES_ENV} is neither a JSON object nor the path of a JSON file."
            )
        text = path.read_text(encoding="utf-8")
    try:
        devices = json.loads(text)
    except json.JSONDecodeError:
        # The decoder's message quotes the document, i.e. the keys: never show it.
        raise SimulatorError(f"{IOTHUB_DEVICES_ENV} does not hold valid JSON.") from None
    if not isinstance(devices, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in devices.items()
    ):
        raise SimulatorError(f"{IOTHUB_DEVICES_ENV} must map car ids to connection strings.")
    for car, value in devices.items():
        parts = dict(p.split("=", 1) for p in value.split(";") if "=" in p)
        if not {"HostName", "DeviceId"} <= parts.keys() or not (
            "SharedAccessKey" in parts or "x509" in parts
        ):
            raise SimulatorError(
                f"The device connection string for car {car} in {IOTHUB_DEVICES_ENV} is "
                "malformed (expected 'HostName=...;DeviceId=...;SharedAccessKey=...')."
            )
    return devices


def _connect_from_string(connection_string: str) -> Any:
    from azure.iot.device import IoTHubDeviceClient  # noqa: PLC0415 - optional at import

    client = IoTHubDeviceClient.create_from_connection_string(connection_string)
    client.connect()
    return client


def _connect_by_dps(host: str, scope: str, group_key: str, car_id: str) -> Any:
    from azure.iot.device import IoTHubDeviceClient, ProvisioningDeviceClient  # noqa: PLC0415

    key = derive_device_key(group_key, car_id)
    provisioning = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=host, registration_id=car_id, id_scope=scope, symmetric_key=key
    )
    result = provisioning.register()
    if result.status != "assigned":
        raise RuntimeError(f"DPS did not assign car {car_id} to a hub (status {result.status})")
    state = result.registration_state
    client = IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=key, hostname=state.assigned_hub, device_id=state.device_id
    )
    client.connect()
    return client


def build_message(topic: str, value: bytes) -> Any:
    """An IoT Hub message whose JSON body routing queries can read."""
    from azure.iot.device import Message  # noqa: PLC0415

    message = Message(value, content_encoding="utf-8", content_type="application/json")
    message.custom_properties["topic"] = topic
    return message


class IoTHubSink(CountingSink):
    """Sends each message as the device of its car; keeps at most `max_open` connections."""

    name = "iothub"

    def __init__(
        self,
        connect: Callable[[str], Any],
        *,
        secrets: tuple[str, ...] = (),
        known_cars: set[str] | None = None,
        max_open: int = 64,
        attempts: int = 4,
        backoff_s: float = 1.0,
        make_message: Callable[[str, bytes], Any] = build_message,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__()
        self._connect = connect
        self._secrets = secrets
        self._known_cars = known_cars
        self._max_open = max_open
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._make_message = make_message
        self._sleep_kw = {} if sleep is None else {"sleep": sleep}
        self._open: OrderedDict[str, Any] = OrderedDict()
        self._lost_in_a_row = 0

    @classmethod
    def from_environment(cls, **kwargs: Any) -> IoTHubSink:
        """The sink for the identities in the environment (device map, else DPS)."""
        scope, group_key = os.environ.get(DPS_SCOPE_ENV), os.environ.get(DPS_KEY_ENV)
        if not os.environ.get(IOTHUB_DEVICES_ENV) and scope and group_key:
            host = os.environ.get(DPS_HOST_ENV, DPS_DEFAULT_HOST)
            derive_device_key(group_key, "probe")  # fail now on a malformed key
            return cls(
                lambda car: _connect_by_dps(host, scope, group_key, car),
                secrets=(group_key,),
                **kwargs,
            )
        devices = read_device_map(os.environ.get(IOTHUB_DEVICES_ENV))
        return cls(
            lambda car: _connect_from_string(devices[car]),
            secrets=tuple(devices.values()),
            known_cars=set(devices),
            **kwargs,
        )

    @property
    def healthy(self) -> bool:
        return self._lost_in_a_row < _UNHEALTHY_AFTER

    def check(self, car_ids: list[str]) -> None:
        """Fail before the run when the device map lacks some of the fleet's cars."""
        if self._known_cars is None:
            return
        missing = [c for c in car_ids if c not in self._known_cars]
        if missing:
            raise SimulatorError(
                f"{IOTHUB_DEVICES_ENV} has no device for {len(missing)} of {len(car_ids)} cars "
                f"(first: {missing[0]}); add them or simulate fewer batteries."
            )

    def send_car(self, topic: str, car_id: str, value: bytes) -> None:
        """Send `value` as the device of `car_id`."""
        self._deliver_as(topic, car_id, value)

    def send_batch(self, topic: str, batch) -> None:
        cars = batch.frame["car_id"].tolist() if batch.frame is not None else batch.keys
        for car, value in zip(cars, batch.values, strict=True):
            self._deliver_as(topic, car, value)

    def _deliver(self, topic: str, key: str, value: bytes) -> None:
        # Notes are keyed by car already; readings go through send_batch with their car.
        self._deliver_as(topic, key, value)

    def close(self):
        for car in list(self._open):
            self._disconnect(car)
        return super().close()

    def _describe(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", self._secrets)

    def _client(self, car_id: str) -> Any:
        if car_id in self._open:
            self._open.move_to_end(car_id)
            return self._open[car_id]
        if len(self._open) >= self._max_open:
            self._disconnect(next(iter(self._open)))
        client = retry_call(
            lambda: self._connect(car_id),
            attempts=self._attempts,
            retry_on=(Exception,),
            describe=self._describe,
            base_s=self._backoff_s,
            **self._sleep_kw,
        )
        self._open[car_id] = client
        return client

    def _disconnect(self, car_id: str) -> None:
        client = self._open.pop(car_id)
        try:
            client.shutdown()
        except Exception as exc:  # noqa: BLE001 - a failed goodbye loses nothing
            _LOG.debug("Closing the device client of %s failed: %s", car_id, self._describe(exc))

    def _deliver_as(self, topic: str, car_id: str, value: bytes) -> None:
        try:
            client = self._client(car_id)
            retry_call(
                lambda: client.send_message(self._make_message(topic, value)),
                attempts=self._attempts,
                retry_on=(Exception,),
                describe=self._describe,
                base_s=self._backoff_s,
                **self._sleep_kw,
            )
        except Exception as exc:  # noqa: BLE001 - counted and logged redacted; run goes on
            self.failed += 1
            self._lost_in_a_row += 1
            if car_id in self._open:
                self._disconnect(car_id)
            _LOG.error("Lost a message of car %s: %s", car_id, self._describe(exc))
            return
        self.delivered += 1
        self._lost_in_a_row = 0

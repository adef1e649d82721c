"""Topic admin on any Kafka cluster: wait until it answers, list, create, recreate topics."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from broker.errors import BrokerError
from core.kafka_clients import DebugLog

_LOG = logging.getLogger(__name__)


def wait_for_kafka(
    bootstrap: str, timeout_s: float = 30.0, config: Mapping[str, str] | None = None
) -> None:
    """Return once Kafka at `bootstrap` answers a metadata request, else raise BrokerError."""
    admin = admin_client(bootstrap, config)
    deadline = time.monotonic() + timeout_s
    while not answers(admin, deadline):
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"Kafka at {bootstrap} is unreachable after {timeout_s:g} s; start it with "
                "`pitstop broker start` or fix kafka.bootstrap_servers."
            )
        time.sleep(0.2)


def list_topics(bootstrap: str, timeout_s: float = 10.0) -> dict[str, int]:
    """Partition count of every non-internal topic at `bootstrap`."""
    return _metadata_or_fail(admin_client(bootstrap), bootstrap, timeout_s)


def ensure_topics(bootstrap: str, topics: Mapping[str, int], timeout_s: float = 30.0) -> list[str]:
    """Create the missing topics (name -> partitions) and wait for their leaders; names created."""
    if not topics:
        return []
    deadline = time.monotonic() + timeout_s
    admin = admin_client(bootstrap)
    existing = _metadata_or_fail(admin, bootstrap, timeout_s)
    for name, wanted in topics.items():
        if name in existing and existing[name] != wanted:
            # Changing partitions would reshuffle keys across partitions; recreate_topics is
            # the explicit way to start over.
            _LOG.warning(
                "Topic %s has %d partitions, configuration says %d; leaving it as is",
                name,
                existing[name],
                wanted,
            )
    missing = {name: count for name, count in topics.items() if name not in existing}
    _create_topics(admin, bootstrap, missing, deadline, retry_existing=False)
    _wait_for_leaders(admin, bootstrap, list(topics), deadline)
    if missing:
        _LOG.info(
            "Created topics %s on %s", ", ".join(f"{n}({c})" for n, c in missing.items()), bootstrap
        )
    return sorted(missing)


def recreate_topics(bootstrap: str, topics: Mapping[str, int], timeout_s: float = 60.0) -> None:
    """Delete the topics (and their data) if present, wait until they are gone, create them anew."""
    deadline = time.monotonic() + timeout_s
    admin = admin_client(bootstrap)
    existing = _metadata_or_fail(admin, bootstrap, timeout_s)
    doomed = [name for name in topics if name in existing]
    if doomed:
        futures = admin.delete_topics(
            doomed, operation_timeout=timeout_s, request_timeout=timeout_s
        )
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise BrokerError(
                        f"Could not delete topic {name!r} on {bootstrap} ({_kafka_reason(exc)}); "
                        "check that the broker allows topic deletion."
                    ) from None
        while set(doomed) & set(_metadata_or_fail(admin, bootstrap, _remaining(deadline))):
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"Topics {', '.join(doomed)} on {bootstrap} were still being deleted after "
                    f"{timeout_s:g} s; try again or check the broker log."
                )
            time.sleep(0.2)
        _LOG.info("Deleted topics %s on %s", ", ".join(doomed), bootstrap)
    _create_topics(admin, bootstrap, dict(topics), deadline, retry_existing=True)
    _wait_for_leaders(admin, bootstrap, list(topics), deadline)


def admin_client(bootstrap: str, config: Mapping[str, str] | None = None) -> AdminClient:
    """An admin client for `bootstrap` whose own log lines go to DEBUG."""
    settings: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "logger": DebugLog("broker.librdkafka"),
        # librdkafka backs off up to 10 s between reconnects; a starting broker is up sooner.
        "reconnect.backoff.max.ms": 500,
    }
    settings.update(config or {})
    return AdminClient(settings)


def answers(admin: AdminClient, deadline: float) -> bool:
    """True once the cluster answers a metadata request (waiting at most until `deadline`)."""
    try:
        metadata = admin.list_topics(timeout=max(0.5, min(2.0, _remaining(deadline))))
    except KafkaException:
        return False
    return bool(metadata.brokers)


def _topic_partitions(admin: AdminClient, timeout_s: float) -> dict[str, int]:
    metadata = admin.list_topics(timeout=max(0.5, timeout_s))
    return {
        name: len(topic.partitions)
        for name, topic in metadata.topics.items()
        if not name.startswith("__") and topic.error is None
    }


def _metadata_or_fail(admin: AdminClient, bootstrap: str, timeout_s: float) -> dict[str, int]:
    try:
        return _topic_partitions(admin, timeout_s)
    except KafkaException as exc:
        raise BrokerError(
            f"Kafka at {bootstrap} is unreachable ({_kafka_reason(exc)}); start it with "
            "`pitstop broker start` or fix kafka.bootstrap_servers."
        ) from None


def _create_topics(
    admin: AdminClient,
    bootstrap: str,
    topics: Mapping[str, int],
    deadline: float,
    *,
    retry_existing: bool,
) -> None:
    pending = dict(topics)
    while pending:
        timeout = max(1.0, _remaining(deadline))
        # -1 lets the cluster apply its default replication, so this also works off our broker.
        futures = admin.create_topics(
            [NewTopic(name, count, -1) for name, count in pending.items()],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                code = exc.args[0].code()
                if code == KafkaError.TOPIC_ALREADY_EXISTS and retry_existing:
                    continue  # a just-deleted topic lingers briefly; try again
                if code != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BrokerError(
                        f"Could not create topic {name!r} on {bootstrap} ({_kafka_reason(exc)}); "
                        "check the partition count and the broker log."
                    ) from None
            pending.pop(name)
        if pending:
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"Topics {', '.join(pending)} on {bootstrap} could not be recreated in time "
                    "because their deletion had not finished; try again."
                )
            time.sleep(0.3)


def _wait_for_leaders(
    admin: AdminClient, bootstrap: str, names: list[str], deadline: float
) -> None:
    """Producers fail fast on a topic without leaders, so creation waits for them."""
    while True:
        try:
            metadata = admin.list_topics(timeout=max(0.5, min(2.0, _remaining(deadline))))
        except KafkaException:
            metadata = None
        if metadata is not None and all(
            name in metadata.topics
            and metadata.topics[name].error is None
            and metadata.topics[name].partitions
            and all(p.leader >= 0 for p in metadata.topics[name].partitions.values())
            for name in names
        ):
            return
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"Topics {', '.join(names)} on {bootstrap} had no partition leaders in time; "
                "check the broker log."
            )
        time.sleep(0.2)


def _kafka_reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())

"""Streaming sources: Kafka (local broker or Event Hubs' Kafka endpoint)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from core.config import PitstopConfig


def kafka_options(
    cfg: PitstopConfig, topic: str, starting_offsets: str | None = None
) -> dict[str, str]:
    """Options of Spark's Kafka source for `topic` (includes the secret when Event Hubs is used).

    No `kafka.group.id`: Spark keeps offsets in the checkpoint, and a shared group id makes
    concurrent queries interfere. `starting_offsets` (Spark's JSON form) overrides
    `stream.starting_offsets` for a new checkpoint.
    """
    options = {
        "kafka.bootstrap.servers": cfg.kafka.bootstrap_servers,
        "subscribe": topic,
        "startingOffsets": starting_offsets or cfg.stream.starting_offsets,
        "failOnDataLoss": str(cfg.stream.fail_on_data_loss).lower(),
        "includeHeaders": "false",
    }
    if cfg.stream.max_offsets_per_trigger:
        options["maxOffsetsPerTrigger"] = str(cfg.stream.max_offsets_per_trigger)
    if cfg.stream.min_partitions:
        options["minPartitions"] = str(cfg.stream.min_partitions)
    if cfg.kafka.security_protocol != "PLAINTEXT":
        options["kafka.security.protocol"] = cfg.kafka.security_protocol
    if cfg.kafka.sasl_mechanism:
        options["kafka.sasl.mechanism"] = cfg.kafka.sasl_mechanism
    secret = cfg.kafka.connection_string()
    if secret is not None:
        # Event Hubs: user name is the literal $ConnectionString, password the string itself.
        options["kafka.sasl.jaas.config"] = (
            f'{cfg.kafka.login_module} required username="$ConnectionString" '
            f'password="{secret.get_secret_value()}";'
        )
    options.update({f"kafka.{k}": v for k, v in cfg.kafka.client_options.items()})
    return options


def read_kafka_stream(
    spark: SparkSession, cfg: PitstopConfig, topic: str, starting_offsets: str | None = None
) -> DataFrame:
    """A streaming DataFrame of raw Kafka records (key, value, topic, partition, offset, ...)."""
    options = kafka_options(cfg, topic, starting_offsets)
    return spark.readStream.format("kafka").options(**options).load()

"""The one place that builds a SparkSession, from configuration."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import SparkSession

from core.config import PitstopConfig
from streaming.jars import check_pyspark_version, ivy_dir, ivy_settings, packages_arg, state_jar

log = logging.getLogger(__name__)


def spark_conf(cfg: PitstopConfig) -> dict[str, str]:
    """Every Spark setting Pitstop relies on, as a plain dict (also used for spark-submit)."""
    conf = {
        "spark.app.name": cfg.spark.app_name,
        "spark.jars.packages": packages_arg(),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": str(cfg.spark.ui_enabled).lower(),
        "spark.driver.memory": cfg.spark.driver_memory,
        # Arrow batches of ~1,000 rows were 30-40% faster than the default 10,000 for model
        # scoring on 2 cores (DESIGN.md).
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(cfg.spark.arrow_batch_size),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Small local tables: Delta's snapshot state needs few partitions.
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.streaming.stopGracefullyOnShutdown": "true",
        # The battery flow keeps each battery's history in transformWithState, which needs
        # RocksDB. Changelog checkpointing writes only each batch's changes, and not
        # tracking the total row count spares a full count per commit.
        "spark.sql.streaming.stateStore.providerClass": (
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
        ),
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": "false",
        # A processing-time stateful query would otherwise run an empty micro-batch every
        # trigger while no data comes; expired state is cleaned by the next real one.
        "spark.sql.streaming.noDataMicroBatches.enabled": "false",
        # Each micro-batch checkpoints a few intermediates locally; let the cleaner drop the
        # blocks of finished batches promptly instead of every 30 minutes.
        "spark.cleaner.periodicGC.interval": "2min",
    }
    if not os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        # On Databricks the battery-state jar is a library of the job's cluster instead
        # (resources/streaming_job.yml); its session exists before this code runs.
        local = cfg.path(cfg.home) if "://" not in cfg.home else Path(tempfile.gettempdir())
        conf["spark.jars"] = str(state_jar(local))
    if "://" not in cfg.home:
        conf["spark.jars.ivy"] = str(ivy_dir(cfg.home))
        conf["spark.jars.ivySettings"] = str(ivy_settings())
        conf["spark.sql.warehouse.dir"] = str(cfg.path(cfg.home) / "warehouse")
        # Keep Derby's log out of the working directory.
        conf["spark.driver.extraJavaOptions"] = (
            f"-Dderby.system.home={cfg.path(cfg.home)} -Dpitstop.ivy.dir={ivy_dir(cfg.home)}"
        )
    conf.update(cfg.spark.conf)
    return conf


def build_spark_session(cfg: PitstopConfig, app_name: str | None = None) -> SparkSession:
    """Get or create the SparkSession for `cfg` (Delta and the Kafka source on the classpath)."""
    check_pyspark_version()
    # Workers must run the same interpreter as the driver (the project's venv).
    os.environ.setdefault("PYSPARK_PYTHON", _python())
    builder = SparkSession.builder
    if cfg.spark.master:
        builder = builder.master(cfg.spark.master)
    for key, value in spark_conf(cfg).items():
        builder = builder.config(key, value)
    if app_name:
        builder = builder.appName(app_name)
    with _jvm_output_to_stderr():
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    _quiet_expected_warnings(spark)
    # Batch scoring runs the battery flow's state step (transformWithState) outside any
    # stream; its state store needs the coordinator that the streaming query manager
    # registers on the driver, so create that manager now.
    spark.streams.active  # noqa: B018
    log.info("Spark %s session ready (master %s)", spark.version, spark.sparkContext.master)
    return spark


@contextmanager
def _jvm_output_to_stderr() -> Iterator[None]:
    """Start the JVM (and so every Python worker it forks) with stderr as its stdout.

    Ivy's resolution report and PySpark's state-worker notices print to stdout; a command
    whose stdout is data (`pitstop replay --format json | jq`) must not carry them.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


# Loggers whose only warning is something Pitstop does on purpose, every micro-batch:
# `delta_appends.release_checkpoint` unpersists each local checkpoint once the batch is
# done, and Spark warns that such an RDD cannot be recomputed; the state server warns for
# every battery that has no state yet ("Value state ... doesn't contain a value").
_EXPECTED_WARNINGS = (
    "org.apache.spark.rdd.MapPartitionsRDD",
    "org.apache.spark.sql.execution.python.streaming.TransformWithStateInPySparkStateServer",
)


def _quiet_expected_warnings(spark: SparkSession) -> None:
    """Raise the named loggers to ERROR so the job's log keeps the warnings that matter."""
    jvm = spark.sparkContext._jvm
    error = jvm.org.apache.logging.log4j.Level.ERROR
    for name in _EXPECTED_WARNINGS:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, error)


def _python() -> str:
    import sys

    return sys.executable

"""The job's log keeps Spark's warnings, less the one Pitstop causes on purpose each batch.

(Spark's JVM inherited the test process's stderr before any test began, so its log lines
cannot be captured here; the loggers' levels are checked instead.)
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.component


def _level(spark, logger: str) -> str:
    log4j = spark.sparkContext._jvm.org.apache.logging.log4j
    return log4j.LogManager.getLogger(logger).getLevel().toString()


def test_the_unpersisted_local_checkpoint_warning_is_quiet(spark):
    # `sinks.release_checkpoint` unpersists ~7 local checkpoints per micro-batch on purpose.
    assert _level(spark, "org.apache.spark.rdd.MapPartitionsRDD") == "ERROR"


def test_other_spark_warnings_still_reach_the_log(spark):
    assert _level(spark, "org.apache.spark.scheduler.DAGScheduler") == "WARN"
    assert _level(spark, "org.apache.spark.rdd.RDD") == "WARN"

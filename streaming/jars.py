"""The Maven coordinates Spark needs, and where they are cached.

pyspark, delta-spark and the Kafka connector move together (pyproject.toml pins the
Python side): Delta 4.4.x is built for Spark 4.2 / Scala 2.13 and, since Delta 4.1, the
jar name carries the Spark minor version; the Kafka source must match Spark exactly.
The same list feeds the SparkSession builder and `spark-submit --packages`.
"""

from __future__ import annotations

from pathlib import Path

from pitstop.errors import PitstopError

SPARK_VERSION = "4.2.0"
SCALA_BINARY = "2.13"
DELTA_VERSION = "4.4.0"  # the newest delta-spark_4.2 jar on Maven Central

SPARK_PACKAGES: tuple[str, ...] = (
    f"io.delta:delta-spark_4.2_{SCALA_BINARY}:{DELTA_VERSION}",
    f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY}:{SPARK_VERSION}",
)


class JarsError(PitstopError):
    """The installed pyspark does not match the pinned jars."""


def check_pyspark_version() -> None:
    """Fail early, in one sentence, when the installed pyspark is not the pinned one."""
    import os

    import pyspark

    # Databricks runtimes bring their own (patched) Spark; the cluster's runtime decides.
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return
    if pyspark.__version__ != SPARK_VERSION:
        raise JarsError(
            f"pyspark {pyspark.__version__} is installed but Pitstop's jars are pinned for "
            f"{SPARK_VERSION}; reinstall with `make setup`."
        )


def ivy_dir(home: str | Path) -> Path:
    """Project-local Ivy cache that Spark resolves the packages into (once)."""
    return Path(home) / "ivy"


def packages_arg() -> str:
    """The comma-separated list for `spark.jars.packages` / `spark-submit --packages`."""
    return ",".join(SPARK_PACKAGES)


def ivy_settings() -> Path:
    """Ivy settings that resolve from Maven Central only (see the file for why)."""
    return Path(__file__).resolve().parents[1] / "jvm" / "ivysettings.xml"

"""The Maven coordinates Spark needs, and where they are cached.

pyspark, delta-spark and the Kafka connector move together (pyproject.toml pins the
Python side): Delta 4.4.x is built for Spark 4.2 / Scala 2.13 and, since Delta 4.1, the
jar name carries the Spark minor version; the Kafka source must match Spark exactly.
The same list feeds the SparkSession builder and `spark-submit --packages`.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import PitstopError

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


# Pitstop's own JVM code: the battery flow's state step (jvm/battery-state). Compiled against
# the Spark jars pyspark ships, so it needs a JDK's javac but no download.
STATE_SOURCES = Path(__file__).resolve().parents[1] / "jvm" / "battery-state" / "src" / "main"


def state_jar(home: str | Path) -> Path:
    """The battery-state jar under `<home>/jars`, compiled from its sources when they change."""
    import hashlib
    import zipfile

    sources = sorted((STATE_SOURCES / "java").rglob("*.java"))
    digest = hashlib.sha1(SPARK_VERSION.encode())
    for source in sources:
        digest.update(source.read_bytes())
    jar = Path(home) / "jars" / f"pitstop-battery-state-{digest.hexdigest()[:12]}.jar"
    if jar.exists():
        return jar
    classes = jar.parent / f".build-{digest.hexdigest()[:12]}"
    _compile(sources, classes)
    partial = jar.with_suffix(".tmp")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: pitstop\n")
        for path in sorted(classes.rglob("*.class")):
            archive.write(path, path.relative_to(classes).as_posix())
    partial.replace(jar)  # atomic: a concurrent build never sees half a jar
    return jar


def _compile(sources: list[Path], classes: Path) -> None:
    import os
    import shutil
    import subprocess

    import pyspark

    java_home = os.environ.get("JAVA_HOME")
    javac = shutil.which("javac", path=f"{java_home}/bin" if java_home else None) or shutil.which(
        "javac"
    )
    if javac is None:
        raise JarsError(
            "javac is not on PATH: install a Java 17 JDK (apt-get install openjdk-17-jdk-headless) "
            "so Pitstop can build its battery-state jar."
        )
    classpath = str(Path(pyspark.__file__).parent / "jars" / "*")
    shutil.rmtree(classes, ignore_errors=True)
    done = subprocess.run(
        [
            javac,
            "--release",
            "17",
            "-nowarn",
            "-cp",
            classpath,
            "-d",
            str(classes),
            *map(str, sources),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise JarsError(f"Building the battery-state jar failed:\n{done.stderr.strip()}")

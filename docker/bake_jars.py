"""Resolve Spark's pinned jars into the image at build time (run by docker/Dockerfile).

Starts one local session through the project's own builder and configuration, so the
Ivy cache lands exactly where containers look for it at run time, then proves Delta
works and both pinned artifacts are on disk. Fails the build, in one sentence, if not.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from core.config import load_config
from streaming.jars import SPARK_PACKAGES, ivy_dir
from streaming.session import build_spark_session

log = logging.getLogger("pitstop.bake_jars")


def _artifact_jar(coordinate: str) -> str:
    """The file name Ivy gives a resolved `group:artifact:version` jar."""
    group, artifact, version = coordinate.split(":")
    return f"{group}_{artifact}-{version}.jar"


def main() -> int:
    """Resolve, smoke-test and verify the jars; return a process exit code."""
    cfg = load_config()
    spark = build_spark_session(cfg, app_name="pitstop-bake-jars")
    try:
        with tempfile.TemporaryDirectory() as scratch:
            table = str(Path(scratch) / "delta-smoke")
            spark.range(3).write.format("delta").save(table)
            rows = spark.read.format("delta").load(table).count()
    finally:
        spark.stop()
    if rows != 3:
        log.error("Delta smoke test read %d rows instead of 3.", rows)
        return 1
    jars = ivy_dir(cfg.path(cfg.home)) / "jars"
    missing = [c for c in SPARK_PACKAGES if not (jars / _artifact_jar(c)).is_file()]
    if missing:
        log.error("Spark did not resolve %s into %s.", ", ".join(missing), jars)
        return 1
    log.info("Baked %d jars into %s.", len(list(jars.glob("*.jar"))), jars)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(main())

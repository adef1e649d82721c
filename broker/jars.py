"""The broker's jars: resolved once from Maven Central by the project's pom, and the JVM class
archive that makes later starts cheaper."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from broker.errors import BrokerError, last_error_line
from broker.files import BrokerFiles, exclusive
from broker.java import KAFKA_VERSION, find_java

_LOG = logging.getLogger(__name__)

POM_PATH = Path(__file__).resolve().parents[1] / "jvm" / "kafka-broker" / "pom.xml"
_MAVEN_TIMEOUT_S = 900
_MARKER = ".pitstop-resolved"
CLASS_ARCHIVE = f"kafka-{KAFKA_VERSION}.jsa"


def ensure_broker_jars(home: Path, *, maven_repo: Path | None = None) -> Path:
    """Resolve the Kafka broker jars into `<home>/broker/lib` once per pom version; return it."""
    lib = Path(home) / "broker" / "lib"
    if not POM_PATH.is_file():
        raise BrokerError(
            f"{POM_PATH} is missing; install Pitstop from its source checkout (pip install -e .) "
            "so the broker's Maven pom is available."
        )
    digest = hashlib.sha256(POM_PATH.read_bytes()).hexdigest()
    if _jars_resolved(lib, digest):
        return lib
    with exclusive(lib.parent / ".resolve.lock"):
        if _jars_resolved(lib, digest):  # another process resolved while we waited
            return lib
        find_java()  # Maven needs it too, and our message is clearer than Maven's
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "Maven (`mvn`) is not on PATH; install Maven 3.8+ so Pitstop can fetch the "
                "Kafka broker jars from Maven Central."
            )
        # Copy into a staging folder first so a failed or interrupted resolve never leaves a
        # half-filled lib that the marker would vouch for.
        staging = lib.with_name("lib.partial")
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM_PATH),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        if maven_repo is not None:
            command.append(f"-Dmaven.repo.local={maven_repo}")
        _LOG.info(
            "Resolving Apache Kafka %s broker jars from Maven Central into %s", KAFKA_VERSION, lib
        )
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=_MAVEN_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise BrokerError(
                f"Maven did not finish resolving the Kafka broker jars within "
                f"{_MAVEN_TIMEOUT_S} s; check network access to Maven Central or the mirror "
                "in ~/.m2/settings.xml."
            ) from None
        if result.returncode != 0 or not _has_broker_jar(staging):
            shutil.rmtree(staging, ignore_errors=True)
            reason = last_error_line(result.stdout + "\n" + result.stderr)
            raise BrokerError(
                f"Maven could not resolve the Kafka broker jars ({reason}); check network access "
                "to Maven Central or the mirror in ~/.m2/settings.xml."
            )
        (staging / _MARKER).write_text(f"{digest}\n", encoding="utf-8")
        shutil.rmtree(lib, ignore_errors=True)
        staging.rename(lib)
    _LOG.info("Kafka broker jars ready in %s", lib)
    return lib


def _jars_resolved(lib: Path, digest: str) -> bool:
    marker = lib / _MARKER
    return (
        marker.is_file()
        and marker.read_text(encoding="utf-8").strip() == digest
        and _has_broker_jar(lib)
    )


def _has_broker_jar(folder: Path) -> bool:
    return (folder / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()


def class_archive_options(lib: Path, layout: BrokerFiles, *, record: bool = True) -> list[str]:
    """JVM flags that use the shared class archive, or record one when there is none yet.

    Loading Kafka's classes from a CDS archive cuts about a third of the CPU a start costs.
    Java 17 can only write the archive when the JVM exits, so the first broker records it in
    its data dir and stop_broker moves it next to the jars; re-resolving the jars deletes it.
    A stale or damaged archive is harmless: the JVM checks it and falls back to the jars.
    """
    archive = lib / CLASS_ARCHIVE
    quiet = "-Xlog:cds*=off"  # the JVM warns about each class it cannot archive
    if archive.is_file():
        return [f"-XX:SharedArchiveFile={archive}", quiet]
    return [f"-XX:ArchiveClassesAtExit={layout.pending_archive}", quiet] if record else []


def adopt_class_archive(layout: BrokerFiles, lib: Path, *, complete: bool) -> None:
    """Keep the class archive a cleanly stopped broker wrote beside the jars; drop a partial."""
    pending = layout.pending_archive
    if not pending.is_file():
        return
    if complete and lib.is_dir() and not (lib / CLASS_ARCHIVE).exists():
        os.replace(pending, lib / CLASS_ARCHIVE)
        _LOG.info("Saved a class archive for faster broker starts in %s", lib)
    else:
        pending.unlink(missing_ok=True)  # killed mid-write, or another broker was first

"""Replay a recording through the streaming pipeline, or score it as one batch.

Both run the battery flow -- the stream's own steps, its state step included -- into a
separate output location, with the registered champion (or a pinned `--model`); neither
trains anything.
Each run starts from an empty output location, so the same input gives the same tables.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pyspark.sql import SparkSession

from core.config import PitstopConfig, StorageConfig
from streaming.battery.flow import battery_query, build_job, score_recording
from streaming.files import RecordingError, messages_from_rows, read_recording, recording_kind

log = logging.getLogger(__name__)

REPLAY_QUERY = "replay"


def output_config(cfg: PitstopConfig, output: Path) -> PitstopConfig:
    """`cfg` with its lake and checkpoints under `output`, and no alert publishing."""
    return cfg.model_copy(
        update={
            "storage": StorageConfig(
                lake=str(output / "lake"), checkpoints=str(output / "checkpoints")
            ),
            "stream": cfg.stream.model_copy(
                update={"publish_alerts": False, "query_name": REPLAY_QUERY}
            ),
        }
    )


def _prepare(path: Path, output: Path) -> tuple[Path, str]:
    """A clean output location and a folder holding just the telemetry recording."""
    if not path.exists():
        raise RecordingError(f"{path} does not exist.")
    kind = recording_kind(path)
    output = output.resolve()
    if path.resolve() == output or output in path.resolve().parents:
        raise RecordingError("--output must not contain the recording itself.")
    for folder in ("lake", "checkpoints", "input"):
        shutil.rmtree(output / folder, ignore_errors=True)
    staged = output / "input"
    staged.mkdir(parents=True)
    if path.is_file():
        files = [path]
    elif kind == "jsonl" and (path / "battery-telemetry.jsonl").exists():
        files = [path / "battery-telemetry.jsonl"]  # a simulator folder: readings only
    else:
        files = sorted(p for p in path.iterdir() if p.is_file())
    for file in files:
        shutil.copyfile(file, staged / file.name)
    return staged, kind


def run_replay(
    spark: SparkSession,
    cfg: PitstopConfig,
    path: Path,
    output: Path,
    model_uri: str | None = None,
) -> PitstopConfig:
    """Stream a recording with a file source and `availableNow`; returns the output config."""
    staged, kind = _prepare(path, output)
    rcfg = output_config(cfg, output)
    job = build_job(spark, rcfg, model_uri=model_uri)
    messages = read_recording(spark, str(staged), kind, streaming=True)
    query = battery_query(
        spark, job, messages, rcfg.storage.checkpoint(REPLAY_QUERY), available_now=True
    )
    query.awaitTermination()
    log.info("Replayed %s into %s", path, output)
    return rcfg


def run_batch_score(
    spark: SparkSession,
    cfg: PitstopConfig,
    path: Path,
    output: Path,
    model_uri: str | None = None,
) -> PitstopConfig:
    """Score a recording (JSONL or lab CSV) or a Delta telemetry table as one batch."""
    rcfg = output_config(cfg, output)
    if (path / "_delta_log").is_dir():
        stored = spark.read.format("delta").load(str(path))
        messages = messages_from_rows(stored, f"delta:{path}")
        for folder in ("lake", "checkpoints"):
            shutil.rmtree(output.resolve() / folder, ignore_errors=True)
    else:
        staged, kind = _prepare(path, output)
        messages = read_recording(spark, str(staged), kind, streaming=False)
    job = build_job(spark, rcfg, model_uri=model_uri)
    score_recording(job, messages)
    log.info("Scored %s into %s", path, output)
    return rcfg

"""What every flow's query shares: its job context, starting it, and one pass per batch.

A flow is read -> pure steps -> sinks. Each micro-batch is computed once (`materialise`:
one Spark job, counts observed on the way) and its independent sinks then run side by
side; nothing re-reads a table to find out what the batch did.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from pyspark import Accumulator, inheritable_thread_target
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql.streaming import StreamingQuery

from core.config import PitstopConfig
from streaming import checkpoints, tables
from streaming.delta_appends import AppendLedger
from streaming.metrics import StreamMetrics
from streaming.model_refs import RegistryTarget


def sink_app_id(query_id: str, sink: str) -> str:
    """The app id that marks the commits query `query_id` makes to table `sink`."""
    return f"pitstop-{query_id}-{sink}"


@dataclass
class FlowContext:
    """What a flow's micro-batches share, built once by the driver."""

    cfg: PitstopConfig
    paths: dict[str, str]
    query_name: str
    target: RegistryTarget
    ledger: AppendLedger
    loads: Accumulator | None = None
    # The job's Prometheus metrics (streaming.metrics), fed from each batch's observed counts.
    metrics: StreamMetrics | None = None
    # The query's checkpoint (set when the query starts; None for one batch outside a query).
    checkpoint: str | None = None
    _query_id: str | None = field(default=None, repr=False)

    def app_id(self, spark: SparkSession, sink: str) -> str:
        """An app id stable across restarts of this checkpoint: its persistent query id.

        A new checkpoint starts its batch ids at 0 again, and gets a new id; one batch
        outside any query (backfill scoring) gets an id of its own.
        """
        if self._query_id is None:
            self._query_id = (
                checkpoints.query_id(spark, self.checkpoint) if self.checkpoint else uuid4().hex
            )
        return sink_app_id(self._query_id, sink)

    def append(self, spark: SparkSession, frame: DataFrame, sink: str, batch_id: int) -> bool:
        """Append `frame` to table `sink` once per micro-batch, however often it is replayed."""
        return self.ledger.append(frame, self.paths[sink], self.app_id(spark, sink), batch_id)


@dataclass
class FlowJob:
    """What a flow's job is built on: its context, and the context's most used parts."""

    context: FlowContext

    @property
    def cfg(self) -> PitstopConfig:
        return self.context.cfg

    @property
    def paths(self) -> dict[str, str]:
        return self.context.paths

    @property
    def loads(self) -> Accumulator | None:
        return self.context.loads


def mlflow_client(cfg: PitstopConfig) -> Any:
    """An MLflow client on the configured tracking and registry stores."""
    from mlflow import MlflowClient

    from models.registry import configure_mlflow

    configure_mlflow(cfg)
    return MlflowClient(tracking_uri=cfg.mlflow.tracking_uri, registry_uri=cfg.mlflow.registry_uri)


def build_context(
    spark: SparkSession,
    cfg: PitstopConfig,
    query_name: str,
    count_loads: bool = False,
    metrics: StreamMetrics | None = None,
) -> FlowContext:
    """Create the tables (MERGE always has a target) and the context of one query run."""
    return FlowContext(
        cfg=cfg,
        paths=tables.ensure_tables(spark, cfg),
        query_name=query_name,
        target=RegistryTarget(cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri),
        ledger=AppendLedger(spark),
        loads=spark.sparkContext.accumulator(0) if count_loads else None,
        metrics=metrics,
    )


def start_query(
    frame: DataFrame,
    context: FlowContext,
    checkpoint: str,
    process: Callable[[DataFrame, int], None],
    trigger_seconds: float,
    available_now: bool = False,
) -> StreamingQuery:
    """Start `frame` -> foreachBatch(`process`) as the context's query, own checkpoint."""
    context.checkpoint, name = checkpoint, context.query_name
    writer = (
        frame.writeStream.queryName(name)
        .option("checkpointLocation", checkpoint)
        .foreachBatch(process)
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{trigger_seconds} seconds")
    return writer.start()


def materialise(frame: DataFrame, counts: list[Column]) -> tuple[DataFrame, dict[str, Any]]:
    """`frame` computed once (a local checkpoint: lineage cut) and `counts` observed on the way.

    Counts are ints (0 for none); other aggregates (a histogram, a date) keep their value.
    """
    observation = Observation("batch")
    computed = frame.observe(observation, *counts).localCheckpoint(eager=True)
    return computed, {
        k: int(v or 0) if v is None or isinstance(v, (int, float)) else v
        for k, v in observation.get.items()
    }


def run_side_by_side(spark: SparkSession, tasks: list[Callable[[], object]]) -> None:
    """Run independent Spark actions in threads (Spark schedules their jobs concurrently).

    Waits for every task before returning or raising, so no write outlives its batch.
    """
    if len(tasks) <= 1:
        for task in tasks:
            task()
        return
    inherit = inheritable_thread_target(spark)
    with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="pitstop-sink") as pool:
        futures = [pool.submit(inherit(task)) for task in tasks]
        wait(futures)
    for future in futures:
        future.result()

"""JSON Lines per topic, plus the battery readings as CSV in the lab's schema."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from core.contract import LAB_CSV_COLUMNS, contract_to_lab_frame
from simulator.messages import MessageBatch
from simulator.sinks.base import CountingSink

_BUFFER_BYTES = 1 << 20


class FilesSink(CountingSink):
    """Writes `<topic>.jsonl` for every topic and `<topic>.csv` (lab columns) for readings.

    Files are appended incrementally, so memory does not grow with the run; a batch that
    carries contract rows (`MessageBatch.frame`) also lands in the CSV.
    """

    name = "files"

    def __init__(self, output_dir: Path) -> None:
        super().__init__()
        self.output_dir = output_dir
        output_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl: dict[str, IO[bytes]] = {}
        self._csv: dict[str, IO[str]] = {}

    def path(self, topic: str, suffix: str = ".jsonl") -> Path:
        """The file that holds `topic`'s messages."""
        return self.output_dir / f"{topic}{suffix}"

    def send_batch(self, topic: str, batch: MessageBatch) -> None:
        if not len(batch):
            return
        out = self._jsonl_file(topic)
        out.write(batch.blob)
        out.write(b"\n")
        if batch.frame is not None:
            lab = contract_to_lab_frame(batch.frame)
            self._csv_file(topic).write(lab.to_csv(index=False, header=False))
        self.delivered += len(batch)

    def _deliver(self, topic: str, key: str, value: bytes) -> None:
        out = self._jsonl_file(topic)
        out.write(value)
        out.write(b"\n")
        self.delivered += 1

    def flush(self, timeout_s: float | None = None) -> None:
        for handle in (*self._jsonl.values(), *self._csv.values()):
            handle.flush()

    def close(self):
        for handle in (*self._jsonl.values(), *self._csv.values()):
            handle.close()
        self._jsonl.clear()
        self._csv.clear()
        return super().close()

    def _jsonl_file(self, topic: str) -> IO[bytes]:
        if topic not in self._jsonl:
            self._jsonl[topic] = open(self.path(topic), "wb", buffering=_BUFFER_BYTES)
        return self._jsonl[topic]

    def _csv_file(self, topic: str) -> IO[str]:
        if topic not in self._csv:
            handle = open(
                self.path(topic, ".csv"),
                "w",
                encoding="utf-8",
                newline="",
                buffering=_BUFFER_BYTES,
            )
            handle.write(",".join(LAB_CSV_COLUMNS) + "\n")
            self._csv[topic] = handle
        return self._csv[topic]

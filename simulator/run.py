"""Run a simulation: generate the fleet day by day, send it to a sink, write the truth.

`run_simulation` is what `pitstop simulate` (and the demo) call. Events leave in date
order — every battery's day d before any day d+1 — at the pace asked for, and a Ctrl-C
stops generation, flushes what is queued and still returns an honest summary.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from core.config import PitstopConfig
from simulator.errors import SimulatorError
from simulator.fleet import Fleet, FleetParams
from simulator.messages import encode_notes, encode_telemetry, split_note
from simulator.notes import generate_notes
from simulator.sinks import SINK_NAMES, DeliveryCounts, Sink, make_sink
from simulator.truth import TruthWriter, truth_dir

_LOG = logging.getLogger(__name__)

# Readings encoded per slice: bounds the transient memory of a day for any fleet size.
CHUNK_ROWS = 5_000


@dataclass
class SimulationSummary:
    """What a run produced and what the destination acknowledged."""

    sink: str
    batteries: int
    days: int
    events_sent: int
    telemetry_sent: int
    notes_sent: int
    delivered: int
    failed: int
    failures: dict[str, int]
    weak_cells_seeded: int
    batteries_simulated: int
    elapsed_s: float
    output_dir: Path
    truth_dir: Path
    interrupted: bool = False
    stopped_reason: str | None = None
    notes_enabled: bool = False

    @property
    def rate(self) -> float:
        """Events sent per wall-clock second."""
        return self.events_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def not_delivered(self) -> int:
        """Events generated but not acknowledged by the destination."""
        return self.events_sent - self.delivered

    def line(self) -> str:
        """A one-line summary for the CLI."""
        failures = ", ".join(f"{n} {cause}" for cause, n in sorted(self.failures.items()))
        state = " (interrupted)" if self.interrupted else ""
        if self.stopped_reason:
            state = f" (stopped: {self.stopped_reason})"
        return (
            f"{self.events_sent:,} events to {self.sink} in {self.elapsed_s:.1f} s "
            f"({self.rate:,.0f}/s): {self.delivered:,} delivered, {self.not_delivered:,} not; "
            f"{self.days} days x {self.batteries} cars, {self.batteries_simulated} batteries, "
            f"failures: {failures or 'none'}, weak cells seeded: {self.weak_cells_seeded}"
            f"{state}; truth in {self.truth_dir}"
        )


def run_simulation(
    cfg: PitstopConfig,
    *,
    sink: str | Sink = "files",
    batteries: int | None = None,
    days: int | None = None,
    start_date: str | dt.date | None = None,
    seed: int | None = None,
    rate: float | None = None,
    speed: float | None = None,
    failure_rate: float = 0.02,
    output_dir: str | Path | None = None,
    notes: bool = True,
    progress: bool = False,
    message_timeout_s: float = 60.0,
) -> SimulationSummary:
    """Simulate `batteries` cars for `days` days into `sink` and write the ground truth.

    sink: kafka | eventhubs | iothub | files | null, or a ready `Sink`.
    batteries, days, start_date (YYYY-MM-DD), seed: default to `cfg.simulator`.
    rate: at most this many events per second (None: as fast as possible).
    speed: at most this many simulated days per wall second (None: unlimited).
    failure_rate: share of batteries (0..1) given a weak cell that fails early.
    output_dir: files-sink output and `truth/` (default `cfg.simulator.output`).
    notes: also send technicians' component notes.
    progress: show a rich progress bar.
    message_timeout_s: how long Kafka retries a message (e.g. a restarting broker) before
    counting it as failed.
    Raises SimulatorError (one sentence) for bad input or an unreachable destination.
    """
    if isinstance(sink, str) and sink not in SINK_NAMES:
        raise SimulatorError(f"Unknown sink {sink!r}; choose one of {', '.join(SINK_NAMES)}.")
    sim = cfg.simulator
    batteries, days, seed = (
        sim.batteries if batteries is None else batteries,
        sim.days if days is None else days,
        sim.seed if seed is None else seed,
    )
    start = _parse_date(sim.start_date if start_date is None else start_date)
    _check_inputs(batteries, days, rate, speed, failure_rate, message_timeout_s)
    out = Path(sim.output if output_dir is None else output_dir)
    try:
        params = FleetParams(batteries, start, seed=seed, failure_rate=failure_rate)
    except ValueError as exc:
        raise SimulatorError(f"{exc}.") from None

    fleet = Fleet(params)
    topics = cfg.kafka.topics
    note_source = _note_source(notes, fleet.car_ids(), start, days, seed)
    target = sink if not isinstance(sink, str) else _open_sink(sink, cfg, out, message_timeout_s)
    try:
        _check_sink(target, [topics.telemetry, topics.notes], fleet.car_ids())
    except BaseException:
        target.close()
        raise
    truth = TruthWriter(out, notes=note_source is not None)
    loop = _Loop(fleet, target, truth, topics.telemetry, topics.notes, rate, speed)
    started = time.monotonic()
    counts, interrupted = _drive(loop, fleet, target, truth, days, note_source, progress)
    # Elapsed includes the final flush: only acknowledged work counts as done.
    elapsed = time.monotonic() - started
    summary = SimulationSummary(
        sink=target.name,
        batteries=batteries,
        days=loop.days_done,
        events_sent=loop.telemetry_sent + loop.notes_sent,
        telemetry_sent=loop.telemetry_sent,
        notes_sent=loop.notes_sent,
        delivered=counts.delivered,
        failed=counts.failed,
        failures=dict(loop.failures),
        weak_cells_seeded=fleet.weak_cells_seeded,
        batteries_simulated=fleet.batteries_created,
        elapsed_s=elapsed,
        output_dir=out,
        truth_dir=truth_dir(out),
        interrupted=interrupted,
        stopped_reason=loop.stopped_reason,
        notes_enabled=note_source is not None,
    )
    _LOG.info("Simulation finished: %s", summary.line())
    return summary


def _drive(
    loop: _Loop,
    fleet: Fleet,
    target: Sink,
    truth: TruthWriter,
    days: int,
    note_source: Iterator[dict] | None,
    progress: bool,
) -> tuple[DeliveryCounts, bool]:
    """Run the day loop to its end (or Ctrl-C), then flush the sink and close the truth;
    returns the sink's delivery counts and whether the run was interrupted."""
    interrupted = False
    try:
        with _progress_bar(progress, days) as bar:
            loop.run(days, note_source, bar)
    except KeyboardInterrupt:
        interrupted = True
        _LOG.warning("Interrupted: flushing what was sent so far")
    finally:
        try:
            counts = target.close()
        finally:
            truth.write_batteries(fleet.batteries_in_service())
            truth.close()
    return counts, interrupted


class _Loop:
    """The day loop: generate, record truth, encode in slices, send, pace."""

    def __init__(
        self,
        fleet: Fleet,
        sink: Sink,
        truth: TruthWriter,
        telemetry_topic: str,
        notes_topic: str,
        rate: float | None,
        speed: float | None,
    ) -> None:
        self.fleet, self.sink, self.truth = fleet, sink, truth
        self.telemetry_topic, self.notes_topic = telemetry_topic, notes_topic
        self.rate, self.speed = rate, speed
        # With a rate, send small slices so pacing is smooth (~20 sleeps a second).
        self.chunk = CHUNK_ROWS if rate is None else max(1, min(CHUNK_ROWS, int(rate / 20)))
        self.telemetry_sent = 0
        self.notes_sent = 0
        self.days_done = 0
        self.failures: Counter[str] = Counter()
        self.stopped_reason: str | None = None
        self._started = 0.0

    @property
    def sent(self) -> int:
        return self.telemetry_sent + self.notes_sent

    def run(self, days: int, note_source: Iterator[dict] | None, bar: Any) -> None:
        self._started = time.monotonic()
        pending_note = next(note_source, None) if note_source is not None else None
        for day_index in range(days):
            self._pace_day(day_index)
            day = self.fleet.step()
            if day.failures:
                self.truth.write_batteries(day.failures)
                self.failures.update(f.cause for f in day.failures)
            for start in range(0, len(day), self.chunk):
                stop = start + self.chunk
                batch = encode_telemetry(day, start, stop)
                expected = day.expected_daily_cycles[start:stop]
                self.truth.write_readings(day.date, batch.keys, expected)
                self.sink.send_batch(self.telemetry_topic, batch)
                self.telemetry_sent += len(batch)
                self._pace_rate()
            if note_source is not None:
                pending_note = self._send_notes(day.date, pending_note, note_source)
            self.days_done += 1
            if bar is not None:
                bar.advance(events=self.sent)
            if not self.sink.healthy:
                self.stopped_reason = f"{self.sink.name} stopped acknowledging messages"
                _LOG.error("Stopping early: %s", self.stopped_reason)
                return

    def _send_notes(self, date: str, pending: dict | None, source: Iterator[dict]) -> dict | None:
        messages, truths = [], []
        # Notes of this day (or earlier, should the generator lag) go out after its readings.
        while pending is not None and str(pending["written_at"])[:10] <= date:
            message, truth = split_note(pending)
            messages.append(message)
            truths.append(truth)
            pending = next(source, None)
        if messages:
            self.sink.send_batch(self.notes_topic, encode_notes(messages))
            self.truth.write_notes(truths)
            self.notes_sent += len(messages)
        return pending

    def _pace_day(self, day_index: int) -> None:
        if self.speed is not None:
            _sleep_until(self._started + day_index / self.speed)

    def _pace_rate(self) -> None:
        if self.rate is not None:
            _sleep_until(self._started + self.sent / self.rate)


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


class _Bar:
    def __init__(self, progress: Progress, task: Any) -> None:
        self._progress, self._task = progress, task

    def advance(self, events: int) -> None:
        self._progress.update(self._task, advance=1, events=events)


class _ProgressContext:
    def __init__(self, days: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]simulating[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("days · {task.fields[events]:,} events"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._days = days

    def __enter__(self) -> _Bar:
        self._progress.start()
        return _Bar(self._progress, self._progress.add_task("sim", total=self._days, events=0))

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


def _progress_bar(enabled: bool, days: int) -> Any:
    return _ProgressContext(days) if enabled else nullcontext(None)


def _parse_date(value: str | dt.date) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise SimulatorError(f"start_date {value!r} is not a date in YYYY-MM-DD form.") from None


def _check_inputs(
    batteries: int,
    days: int,
    rate: float | None,
    speed: float | None,
    failure_rate: float,
    message_timeout_s: float,
) -> None:
    problems = {
        "batteries must be a whole number of at least 1": not (
            isinstance(batteries, int) and batteries >= 1
        ),
        "days must be a whole number of at least 1": not (isinstance(days, int) and days >= 1),
        "rate must be a positive number of events per second": rate is not None and rate <= 0,
        "speed must be a positive number of days per second": speed is not None and speed <= 0,
        "failure_rate must be between 0 and 1": not 0.0 <= failure_rate <= 1.0,
        "message_timeout_s must be positive": message_timeout_s <= 0,
    }
    for problem, failed in problems.items():
        if failed:
            raise SimulatorError(f"{problem}.")


def _open_sink(name: str, cfg: PitstopConfig, out: Path, message_timeout_s: float) -> Sink:
    return make_sink(name, cfg, output_dir=out, message_timeout_s=message_timeout_s)


def _check_sink(sink: Sink, topics: list[str], car_ids: list[str]) -> None:
    check = getattr(sink, "check", None)
    if check is None:
        return
    # IoT Hub identities are per car; the brokers' names are per topic.
    if sink.name == "iothub":
        check(car_ids)
    else:
        check(topics)


def _note_source(
    enabled: bool, car_ids: list[str], start: dt.date, days: int, seed: int
) -> Iterator[dict] | None:
    return iter(generate_notes(car_ids, start, days, seed)) if enabled else None

"""A second, independent fleet generator for evaluation: lab-schema CSV with its true failures.

Written without looking at Pitstop's simulator's parameters and with other dynamics, so a
model tuned on the simulator is measured on data that does not share its assumptions:

- usage level: a per-battery random walk in log space with a slow personal trend (some
  drivers use the car more every month, some less) and rare jumps (a new job, a move);
- weekly shape: drawn per car (any day may be the busy or the quiet one, some cars stand
  one to three days a week), redrawn at a jump;
- holidays: a fleet-wide Christmas break and public holidays, and each car's own summer
  vacation (mostly parked);
- heavy tails: Student-t day-to-day noise and occasional road trips (2-5x for 1-3 days);
- missing days: parked days (no use, no reading) and telemetry gaps (the car is driven but
  no reading arrives; the next reading's lifetime includes those days);
- product lines with other rated cycles; no health signals (the lab schema has none);
- failures: a battery fails on the day its lifetime reaches its rated cycles ("worn"); on
  half of those days the dead battery sends no reading. A few batteries (`fault_rate`) fail
  earlier from a fault no usage data foresees ("fault"). A new battery, with a new id, is
  fitted the next day.

Outputs (`write_fleet`): `fleet.csv` in the lab's schema (with an unnamed index column, as
the lab's own file sometimes has), `truth/batteries.csv` (battery_id, battery_rated_cycles,
install_date, failure_date, cause) and `truth/readings.csv.gz` (battery_id, date,
expected_daily_cycles: the use the dynamics expect that day before noise, trips and gaps).

Run: python benchmarks/fleets/walkfleet.py OUT_DIR [--batteries 400] [--days 400] [--seed 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

RATED_LINES = np.array([350.0, 450.0, 550.0, 650.0, 800.0, 1000.0, 1500.0])
RATED_SHARE = np.array([0.10, 0.15, 0.20, 0.20, 0.15, 0.12, 0.08])
# No car uses more than this in a day, road trip or not.
MAX_DAILY_CYCLES = 12.0
PUBLIC_HOLIDAYS = ((1, 1), (5, 1), (5, 25), (7, 4), (10, 3), (11, 11), (12, 25), (12, 26))


@dataclass(frozen=True)
class WalkFleetParams:
    """What to generate; rates are per car and year unless named otherwise."""

    batteries: int = 400
    days: int = 400
    seed: int = 1
    start_date: dt.date = dt.date(2023, 3, 1)
    walk_sigma: tuple[float, float] = (0.005, 0.03)  # daily log-level step, drawn per car
    trend_sigma: float = 0.35  # sd of the yearly log-level trend across cars
    jumps_per_year: float = 0.4
    trips_per_year: float = 6.0  # road trips
    parked_share: float = 0.03  # days parked (no use, no reading)
    gaps_per_year: float = 2.0  # telemetry gaps of 1-6 days (used, not reported)
    noise_scale: float = 0.12
    fault_rate: float = 0.01
    no_reading_on_failure: float = 0.5


class WalkFleet:
    """The fleet's state; `step()` simulates one day for every car."""

    def __init__(self, params: WalkFleetParams) -> None:
        self.p = params
        self.rng = np.random.default_rng(params.seed)
        n, rng = params.batteries, self.rng
        self.today = params.start_date
        self.log_level = np.log(np.clip(rng.lognormal(np.log(0.9), 0.5, n), 0.15, 5.0))
        self.walk = rng.uniform(*params.walk_sigma, n)
        self.trend = rng.normal(0.0, params.trend_sigma, n) / 365.0
        self.shape = self._shapes(n)
        self.season_amp = rng.uniform(0.0, 0.15, n)
        self.season_phase = rng.uniform(0, 2 * np.pi, n)
        self.christmas = np.where(rng.random(n) < 0.75, rng.uniform(0.2, 0.6, n), 1.3)
        self.vacation_start = rng.integers(182, 230, n)  # day of year in July-August
        self.vacation_days = rng.integers(10, 19, n)
        self.vacation_factor = rng.uniform(0.1, 0.5, n)
        self.trip_left = np.zeros(n, dtype=int)
        self.trip_factor = np.ones(n)
        self.gap_left = np.zeros(n, dtype=int)
        self.hours_per_cycle = rng.uniform(0.5, 2.5, n)
        self.trips_per_cycle = rng.uniform(0.8, 3.0, n)
        self._ids: set[int] = set()
        self.battery_id = np.zeros(n, dtype=np.int64)
        self.rated = np.zeros(n)
        self.lifetime = np.zeros(n)
        self.age = np.zeros(n, dtype=np.int64)
        self.install = np.empty(n, dtype=object)
        self.fault_at = np.full(n, np.inf)
        self.failures: list[dict] = []
        self._fit(np.arange(n), self.today)
        wear = rng.uniform(0.0, 0.95, n)
        self.lifetime[:] = np.round(wear * self.rated, 2)
        self.fault_at = np.where(
            np.isfinite(self.fault_at), np.maximum(self.fault_at, self.lifetime + 5), np.inf
        )
        self.age[:] = np.round(self.lifetime / np.exp(self.log_level) / 0.9).astype(np.int64)
        self.install[:] = [
            (self.today - dt.timedelta(days=int(a))).isoformat() for a in self.age.tolist()
        ]

    def _shapes(self, k: int) -> np.ndarray:
        """Weekly shapes (k, 7) averaging 1: random busy and quiet days, some days off."""
        rng = self.rng
        shape = np.exp(rng.normal(0.0, 0.3, (k, 7)))
        off = rng.random((k, 7)) < rng.choice([0.0, 0.15, 0.35], size=(k, 1), p=[0.5, 0.3, 0.2])
        shape = np.where(off, rng.uniform(0.05, 0.3, (k, 7)), shape)
        return shape / shape.mean(axis=1, keepdims=True)

    def _new_id(self) -> int:
        while True:
            candidate = int(self.rng.integers(10_000, 999_999))
            if candidate not in self._ids:
                self._ids.add(candidate)
                return candidate

    def _fit(self, slots: np.ndarray, day: dt.date) -> None:
        """New batteries in `slots`, installed on `day`."""
        rng = self.rng
        for slot in slots.tolist():
            self.battery_id[slot] = self._new_id()
        self.rated[slots] = rng.choice(RATED_LINES, size=len(slots), p=RATED_SHARE)
        self.lifetime[slots] = 0.0
        self.age[slots] = 0
        self.install[slots] = day.isoformat()
        faulty = rng.random(len(slots)) < self.p.fault_rate
        self.fault_at[slots] = np.where(
            faulty, self.rated[slots] * rng.uniform(0.1, 0.9, len(slots)), np.inf
        )

    def expected(self, day: dt.date) -> np.ndarray:
        """Each car's expected use on `day`: level x weekday x season x holidays."""
        doy = day.timetuple().tm_yday
        season = 1.0 + self.season_amp * np.sin(2 * np.pi * doy / 365.25 + self.season_phase)
        factor = np.exp(self.log_level) * self.shape[:, day.weekday()] * season
        if (day.month == 12 and day.day >= 22) or (day.month == 1 and day.day <= 2):
            factor = factor * self.christmas
        if (day.month, day.day) in PUBLIC_HOLIDAYS:
            factor = factor * 0.6
        on_vacation = (doy >= self.vacation_start) & (
            doy < self.vacation_start + self.vacation_days
        )
        return np.where(on_vacation, factor * self.vacation_factor, factor)

    def step(self) -> tuple[pd.DataFrame, np.ndarray]:
        """One day: the readings that arrive and every car's expected use."""
        p, rng, n, day = self.p, self.rng, self.p.batteries, self.today
        # The level moves: a random walk with a personal trend, and rare jumps.
        self.log_level += self.trend + rng.normal(0.0, 1.0, n) * self.walk
        jump = rng.random(n) < p.jumps_per_year / 365.0
        if jump.any():
            self.log_level[jump] += rng.normal(0.0, 0.5, jump.sum())
            self.shape[jump] = self._shapes(int(jump.sum()))
        self.log_level = np.clip(self.log_level, np.log(0.1), np.log(8.0))
        expected = self.expected(day)
        starting = (self.trip_left == 0) & (rng.random(n) < p.trips_per_year / 365.0)
        self.trip_left = np.where(starting, rng.integers(1, 4, n), self.trip_left)
        self.trip_factor = np.where(starting, rng.uniform(2.0, 5.0, n), self.trip_factor)
        trip = self.trip_left > 0
        self.trip_left = np.maximum(self.trip_left - 1, 0)
        noise = np.exp(np.clip(rng.standard_t(3, n) * p.noise_scale, -1.0, 1.0))
        parked = rng.random(n) < p.parked_share
        used = np.where(parked, 0.0, expected * noise * np.where(trip, self.trip_factor, 1.0))
        used = np.round(np.minimum(used, MAX_DAILY_CYCLES), 2)
        gap_start = (self.gap_left == 0) & (rng.random(n) < p.gaps_per_year / 365.0)
        self.gap_left = np.where(gap_start, rng.integers(1, 7, n), self.gap_left)
        silent = self.gap_left > 0
        self.gap_left = np.maximum(self.gap_left - 1, 0)

        self.lifetime += used
        self.age += 1
        worn = self.lifetime >= self.rated
        fault = ~worn & (self.lifetime >= self.fault_at)
        failed = worn | fault
        dead_quiet = failed & (rng.random(n) < p.no_reading_on_failure)
        reports = ~parked & ~silent & ~dead_quiet
        hours = np.minimum(used * self.hours_per_cycle * rng.uniform(0.85, 1.15, n), 23.9)
        trips = np.where(used > 0, np.maximum(rng.poisson(used * self.trips_per_cycle), 1), 0)
        idx = np.flatnonzero(reports)
        frame = pd.DataFrame(
            {
                "Date": day.isoformat(),
                "Battery_ID": self.battery_id[idx],
                "Battery_Age_Days": self.age[idx],
                "Number_Of_Trips": trips[idx],
                "Daily_Trip_Duration": np.round(hours[idx], 2),
                "Daily_Cycles_Used": used[idx],
                "Lifetime_Cycles_Used": np.round(self.lifetime[idx], 2),
                "Battery_Rated_Cycles": self.rated[idx],
            }
        )
        truth = pd.DataFrame(
            {"battery_id": self.battery_id.copy(), "date": day.isoformat(), "expected": expected}
        )
        for slot in np.flatnonzero(failed).tolist():
            cause = "worn" if worn[slot] else "fault"
            self.failures.append(self._record(slot, day.isoformat(), cause))
        self._fit(np.flatnonzero(failed), day + dt.timedelta(days=1))
        self.today = day + dt.timedelta(days=1)
        return frame, truth

    def _record(self, slot: int, failure_date: str | None, cause: str | None) -> dict:
        return {
            "battery_id": int(self.battery_id[slot]),
            "battery_rated_cycles": float(self.rated[slot]),
            "install_date": self.install[slot],
            "failure_date": failure_date,
            "cause": cause,
        }

    def in_service(self) -> list[dict]:
        """Truth rows of the batteries fitted at the end (no failure yet)."""
        return [self._record(slot, None, None) for slot in range(self.p.batteries)]


def generate(params: WalkFleetParams) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(lab-schema readings, battery truth, expected use per battery and day)."""
    fleet = WalkFleet(params)
    frames, expected = [], []
    for _ in range(params.days):
        readings, truth = fleet.step()
        frames.append(readings)
        expected.append(truth)
    batteries = pd.DataFrame(fleet.failures + fleet.in_service())
    readings = pd.concat(frames, ignore_index=True)
    use = pd.concat(expected, ignore_index=True).rename(
        columns={"expected": "expected_daily_cycles"}
    )
    # Expected use only on the days each battery was fitted.
    reported = readings["Battery_ID"].unique()
    return readings, batteries, use[use["battery_id"].isin(reported)].reset_index(drop=True)


def write_fleet(folder: Path, params: WalkFleetParams) -> Path:
    """Write `fleet.csv` and `truth/` into `folder`; returns the CSV's path."""
    readings, batteries, use = generate(params)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "truth").mkdir(exist_ok=True)
    path = folder / "fleet.csv"
    readings.to_csv(path)  # with the unnamed index column the lab's file sometimes has
    batteries.to_csv(folder / "truth" / "batteries.csv", index=False)
    use.round(4).to_csv(folder / "truth" / "readings.csv.gz", index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--batteries", type=int, default=400)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start-date", default="2023-03-01")
    args = parser.parse_args()
    params = WalkFleetParams(
        batteries=args.batteries,
        days=args.days,
        seed=args.seed,
        start_date=dt.date.fromisoformat(args.start_date),
    )
    path = write_fleet(args.output, params)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

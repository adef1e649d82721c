"""A seeded, streaming model of a car fleet's daily battery use, wear and failures.

The fleet is simulated one day at a time with numpy across every car, so generation is
fast and memory stays flat however many days are run: the only state is one row per car
(its current battery, usage profile and climate). Each day yields the readings of the
cars that were driven and the batteries that failed.

Daily cycle use is built to be forecastable: a stable per-battery mean, a weekday
pattern, a smooth seasonal/winter factor and moderate multiplicative noise. Rare regime
changes (a new owner or job) and short parked spells (no use, no telemetry) keep it
honest. A `failure_rate` fraction of batteries carry a weak cell that fails them well
before their rated cycles; their health signals sag in the weeks before, which is what
a health-aware model can exploit and cycle arithmetic cannot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

PROFILES: tuple[str, ...] = ("commuter", "ride_hailing", "weekend", "seasonal")
_PROFILE_SHARE = np.array([0.50, 0.15, 0.20, 0.15])
# Mean cycles per day of each profile before the car's own scale.
_BASE_CYCLES = np.array([1.0, 2.6, 0.6, 1.1])
# Monday..Sunday factors, each row averaging 1 so the weekly mean is the base.
_WEEKDAY_FACTOR = np.array(
    [
        [1.15, 1.15, 1.15, 1.15, 1.15, 0.70, 0.55],
        [0.95, 0.95, 0.95, 1.00, 1.15, 1.15, 0.85],
        [0.70, 0.70, 0.70, 0.70, 0.90, 1.60, 1.70],
        [1.00, 1.00, 1.00, 1.00, 1.05, 1.00, 0.95],
    ]
)
# Day-to-day multiplicative noise (coefficient of variation) of cycle use.
_NOISE_CV = np.array([0.07, 0.06, 0.08, 0.07])
# Driving hours per cycle and trips per driving hour, so trips and duration follow cycles.
_HOURS_PER_CYCLE = np.array([1.2, 3.0, 1.8, 1.5])
_TRIPS_PER_HOUR = np.array([1.6, 1.8, 1.0, 1.2])
# Seasonal drivers use the car more in summer (peak mid-July).
_SUMMER_AMPLITUDE = np.array([0.0, 0.0, 0.0, 0.30])
_SUMMER_PEAK_DOY = 196
_COLDEST_DOY = 20

# Battery product lines: rated cycles a battery is specified to last.
RATED_CYCLES = np.array([300.0, 400.0, 500.0, 600.0, 750.0, 900.0, 1000.0, 1200.0])

_MAX_TRIP_HOURS = 23.5
_SIGNAL_DROPOUT = 0.003  # share of health readings missing (sensor dropout -> null)


@dataclass(frozen=True)
class FleetParams:
    """What to simulate: fleet size, first day, seed and the weak-cell share.

    `regime_change_per_year` is the chance a car changes owner or job in a year;
    `parked_spells_per_year` the expected number of spells (1-5 days) a car stands unused.
    """

    batteries: int
    start_date: dt.date
    seed: int = 7
    failure_rate: float = 0.02
    regime_change_per_year: float = 0.15
    parked_spells_per_year: float = 0.5

    def __post_init__(self) -> None:
        if self.batteries < 1:
            raise ValueError(f"batteries must be at least 1, got {self.batteries}")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be within 0..1, got {self.failure_rate}")
        if self.regime_change_per_year < 0 or self.parked_spells_per_year < 0:
            raise ValueError("regime_change_per_year and parked_spells_per_year must be >= 0")


@dataclass(frozen=True)
class BatteryRecord:
    """Ground truth for one battery: when and why it failed (None while still in service)."""

    battery_id: str
    car_id: str
    battery_rated_cycles: float
    install_date: str
    weak_cell: bool
    failure_date: str | None
    cause: str | None


def car_ids(serials: np.ndarray) -> list[str]:
    """Car ids (`C00042`) of car serial numbers."""
    return [f"C{s:05d}" for s in serials.tolist()]


def battery_ids(serials: np.ndarray) -> list[str]:
    """Battery ids (`B000123`) of battery serial numbers."""
    return [f"B{s:06d}" for s in serials.tolist()]


@dataclass
class DayReadings:
    """One simulated day: a reading per driven car, the truth behind it, and the failures.

    `columns` holds the numeric contract fields plus `car_serial` and `battery_serial`;
    ids are formatted only for the slice being encoded, which keeps a large fleet's memory
    down (a Python string per id per day would dominate it).
    """

    date: str
    columns: dict[str, np.ndarray]
    expected_daily_cycles: np.ndarray
    failures: list[BatteryRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.expected_daily_cycles)

    def car_ids(self, start: int = 0, stop: int | None = None) -> list[str]:
        """Car ids of readings `start:stop`."""
        return car_ids(self.columns["car_serial"][start:stop])

    def battery_ids(self, start: int = 0, stop: int | None = None) -> list[str]:
        """Battery ids of readings `start:stop`."""
        return battery_ids(self.columns["battery_serial"][start:stop])


class Fleet:
    """The fleet's state; `step()` advances it one day and returns that day's readings."""

    def __init__(self, params: FleetParams) -> None:
        self.params = params
        self._rng = np.random.default_rng(params.seed)
        self._today = params.start_date
        self._next_serial = 1
        self.weak_cells_seeded = 0
        self.batteries_created = 0
        n = params.batteries
        rng = self._rng

        self._car_serial = np.arange(1, n + 1, dtype=np.int64)
        self._profile = rng.choice(len(PROFILES), size=n, p=_PROFILE_SHARE).astype(np.int8)
        self._scale = self._draw_scale(n)
        self._hours_factor = rng.uniform(0.8, 1.25, n)
        # Climate: mean yearly temperature and seasonal swing; how much cold raises use.
        self._temp_mean = rng.uniform(2.0, 18.0, n)
        self._temp_amp = rng.uniform(6.0, 14.0, n)
        self._winter_k = rng.uniform(0.0, 0.10, n)
        self._parked_left = np.zeros(n, dtype=np.int16)

        self._battery_serial = np.zeros(n, dtype=np.int64)
        self._rated = np.empty(n)
        self._lifetime = np.zeros(n)
        self._age = np.zeros(n, dtype=np.int64)
        self._install = np.zeros(n, dtype=np.int64)
        self._weak = np.zeros(n, dtype=bool)
        self._weak_at = np.full(n, np.inf)
        self._weak_lead_days = np.zeros(n)
        self._crank_base = np.zeros(n)
        self._rest_base = np.zeros(n)
        self._accept_base = np.zeros(n)
        self._install_batteries(np.arange(n), self._today.toordinal())
        self._age_initial_batteries()

    # -- public -----------------------------------------------------------------------

    @property
    def today(self) -> dt.date:
        """The next day `step()` will simulate."""
        return self._today

    def step(self) -> DayReadings:
        """Simulate the next day for every car and return its readings and failures."""
        rng = self._rng
        n = self.params.batteries
        day = self._today
        ordinal = day.toordinal()
        doy = day.timetuple().tm_yday
        weekday = day.weekday()

        self._change_regimes(rng.random(n))
        parked = self._update_parked(rng.random(n), rng.integers(1, 6, n))
        active = ~parked

        temp_expected = self._temp_mean - self._temp_amp * np.cos(
            2 * np.pi * (doy - _COLDEST_DOY) / 365.25
        )
        temperature = temp_expected + rng.normal(0.0, 2.5, n)
        expected = self._expected_cycles(weekday, doy, temp_expected)
        noise = 1.0 + rng.normal(0.0, 1.0, n) * _NOISE_CV[self._profile]
        daily = np.where(active, np.round(expected * np.maximum(noise, 0.05), 3), 0.0)

        self._lifetime += daily
        self._age += 1
        hours = np.minimum(
            daily * _HOURS_PER_CYCLE[self._profile] * self._hours_factor, _MAX_TRIP_HOURS
        )
        trips = np.maximum(rng.poisson(hours * _TRIPS_PER_HOUR[self._profile]), 1)
        health = self._health(temperature, rng)

        failed_weak = active & (self._lifetime >= self._weak_at)
        failed_worn = active & ~failed_weak & (self._lifetime >= self._rated)
        idx = np.flatnonzero(active)
        columns = {
            "car_serial": self._car_serial[idx],
            "battery_serial": self._battery_serial[idx],
            "battery_age_days": self._age[idx],
            "number_of_trips": trips[idx],
            "daily_trip_duration": np.round(hours[idx], 2),
            "daily_cycles_used": daily[idx],
            "lifetime_cycles_used": np.round(self._lifetime[idx], 3),
            "battery_rated_cycles": self._rated[idx],
            **{name: values[idx] for name, values in health.items()},
        }
        readings = DayReadings(
            date=day.isoformat(),
            columns=columns,
            expected_daily_cycles=np.round(expected[idx], 4),
        )
        for mask, cause in ((failed_weak, "weak_cell"), (failed_worn, "worn")):
            for i in np.flatnonzero(mask):
                readings.failures.append(self._record(i, day.isoformat(), cause))
        replaced = np.flatnonzero(failed_weak | failed_worn)
        if replaced.size:
            # The new battery goes in on the failure day; its first reading is tomorrow.
            self._install_batteries(replaced, ordinal)
        self._today = day + dt.timedelta(days=1)
        return readings

    def car_ids(self) -> list[str]:
        """Every car's id (cars keep their id for the whole run)."""
        return car_ids(self._car_serial)

    def batteries_in_service(self) -> Iterator[BatteryRecord]:
        """Truth rows for the batteries still fitted (no failure date yet)."""
        for i in range(self.params.batteries):
            yield self._record(i, None, None)

    # -- model pieces -----------------------------------------------------------------

    def _draw_scale(self, size: int) -> np.ndarray:
        return np.clip(self._rng.lognormal(0.0, 0.25, size), 0.5, 1.8)

    def _install_batteries(self, slots: np.ndarray, ordinal: int) -> None:
        rng = self._rng
        k = slots.size
        serials = np.arange(self._next_serial, self._next_serial + k)
        self._next_serial += k
        self.batteries_created += k
        self._battery_serial[slots] = serials
        self._rated[slots] = rng.choice(RATED_CYCLES, size=k)
        self._lifetime[slots] = 0.0
        self._age[slots] = 0
        self._install[slots] = ordinal
        weak = rng.random(k) < self.params.failure_rate
        self.weak_cells_seeded += int(weak.sum())
        self._weak[slots] = weak
        # A weak cell gives out somewhere between 15% and 80% of the rated cycles.
        self._weak_at[slots] = np.where(
            weak, self._rated[slots] * rng.uniform(0.15, 0.80, k), np.inf
        )
        self._weak_lead_days[slots] = rng.uniform(10.0, 35.0, k)
        self._crank_base[slots] = rng.normal(10.45, 0.12, k)
        self._rest_base[slots] = rng.normal(12.72, 0.04, k)
        self._accept_base[slots] = rng.normal(0.92, 0.02, k)

    def _age_initial_batteries(self) -> None:
        """Start the fleet mid-life: uniform wear, with age consistent with the car's use."""
        rng = self._rng
        n = self.params.batteries
        wear = rng.uniform(0.0, 0.97, n)
        lifetime = np.round(wear * self._rated, 3)
        # A weak battery in service has not failed yet: keep it below its weak point.
        below = np.minimum(lifetime, np.round(self._weak_at * rng.uniform(0.0, 0.95, n), 3))
        lifetime = np.where(self._weak, below, lifetime)
        mean_daily = _BASE_CYCLES[self._profile] * self._scale
        active_share = 1.0 - self.params.parked_spells_per_year * 3.0 / 365.0
        age = np.round(lifetime / (mean_daily * active_share) * rng.uniform(0.9, 1.1, n))
        self._lifetime[:] = lifetime
        self._age[:] = age.astype(np.int64)
        self._install[:] = self._today.toordinal() - self._age

    def _change_regimes(self, draw: np.ndarray) -> None:
        changed = np.flatnonzero(draw < self.params.regime_change_per_year / 365.0)
        if changed.size == 0:
            return
        rng = self._rng
        # A new owner or job: a different profile and a fresh personal usage level.
        shift = rng.integers(1, len(PROFILES), changed.size)
        self._profile[changed] = (self._profile[changed] + shift) % len(PROFILES)
        self._scale[changed] = self._draw_scale(changed.size)
        self._hours_factor[changed] = rng.uniform(0.8, 1.25, changed.size)

    def _update_parked(self, draw: np.ndarray, spell: np.ndarray) -> np.ndarray:
        starting = (self._parked_left == 0) & (draw < self.params.parked_spells_per_year / 365.0)
        self._parked_left = np.where(starting, spell, self._parked_left).astype(np.int16)
        parked = self._parked_left > 0
        self._parked_left[parked] -= 1
        return parked

    def _expected_cycles(self, weekday: int, doy: int, temp_expected: np.ndarray) -> np.ndarray:
        profile = self._profile
        summer = 1.0 + _SUMMER_AMPLITUDE[profile] * np.cos(
            2 * np.pi * (doy - _SUMMER_PEAK_DOY) / 365.25
        )
        winter = 1.0 + self._winter_k * np.clip(10.0 - temp_expected, 0.0, 25.0) / 15.0
        weekly = _WEEKDAY_FACTOR[profile, weekday]
        return _BASE_CYCLES[profile] * self._scale * weekly * summer * winter

    def _health(self, temperature: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        n = self.params.batteries
        wear = np.minimum(self._lifetime / self._rated, 1.0)
        mean_daily = _BASE_CYCLES[self._profile] * self._scale
        # How close a weak cell is to giving out: 0 until its last weeks, 1 on the day.
        lead_cycles = self._weak_lead_days * mean_daily
        weak = np.clip(1.0 - (self._weak_at - self._lifetime) / lead_cycles, 0.0, 1.0)
        cold = np.clip(10.0 - temperature, 0.0, None)
        cranking = (
            self._crank_base
            - 0.9 * wear**1.5
            - 0.035 * cold
            - 1.6 * weak**1.5
            + rng.normal(0.0, 0.12, n)
        )
        resting = (
            self._rest_base
            - 0.30 * wear**2
            - 0.40 * weak**2
            - 0.004 * cold
            + rng.normal(0.0, 0.03, n)
        )
        acceptance = (
            self._accept_base
            - 0.25 * wear**1.2
            - 0.45 * weak**1.5
            - 0.006 * cold
            + rng.normal(0.0, 0.025, n)
        )
        signals = {
            "cranking_voltage_min": np.round(np.clip(cranking, 0.0, None), 2),
            "resting_voltage": np.round(np.clip(resting, 0.0, None), 3),
            "charge_acceptance": np.round(np.clip(acceptance, 0.02, None), 3),
            "ambient_temp_c": np.round(temperature, 1),
        }
        dropout = rng.random((len(signals), n)) < _SIGNAL_DROPOUT
        for row, values in zip(dropout, signals.values(), strict=True):
            values[row] = np.nan
        return signals

    def _record(self, slot: int, failure_date: str | None, cause: str | None) -> BatteryRecord:
        return BatteryRecord(
            battery_id=f"B{self._battery_serial[slot]:06d}",
            car_id=f"C{self._car_serial[slot]:05d}",
            battery_rated_cycles=float(self._rated[slot]),
            install_date=dt.date.fromordinal(int(self._install[slot])).isoformat(),
            weak_cell=bool(self._weak[slot]),
            failure_date=failure_date,
            cause=cause,
        )


def simulate_fleet(params: FleetParams, days: int) -> Iterator[DayReadings]:
    """Yield `days` consecutive days of readings, one `DayReadings` at a time."""
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    fleet = Fleet(params)
    for _ in range(days):
        yield fleet.step()

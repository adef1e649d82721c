"""What the battery state step decides, and the rules it decides by.

The step itself runs in the JVM (`jvm/battery-state`, `pitstop.state.BatteryHistory`,
called by `readings.battery_history`): one state value per battery holds the days it
reported within `window_days + late_after_days` of its latest reading and the first day it
ever reported. A micro-batch's readings of the battery are decided against what *earlier*
micro-batches stored, exactly as stream v1's Delta lookup decided them:

- more than `late_after_days` before the battery's latest stored reading: `late`;
- a (battery, date) already stored from another record, or earlier in this batch (the
  lowest Kafka offset wins): `duplicate`;
- the very record already stored (a source delivered it again, e.g. after a migration):
  `stored`, neither stored nor quarantined again;
- else `new`: stored, and emitted with the stored days of its window -- from the battery's
  first day or `window_days` back, whichever is later -- which `models.forecasting.features`
  turns into model input exactly as training does.

The state is versioned with the micro-batch, so a batch replayed after a crash sees the
state it saw the first time. A battery with no new reading for `stream.state_ttl_days`
leaves the state.
"""

from __future__ import annotations

from dataclasses import dataclass

# Fates of a message.
NEW, REJECTED, STORED = "new", "rejected", "stored"
# The grouping key of messages that broke the contract: they pass through without state. No
# battery can have it (the contract wants a non-empty battery_id).
QUARANTINE_KEY = ""


@dataclass(frozen=True)
class HistoryRules:
    """How far back a battery's readings matter."""

    window_days: int
    late_after_days: int

    @property
    def reach(self) -> int:
        """Days kept per battery: a window behind the oldest reading that is still on time."""
        return self.window_days + self.late_after_days

"""How far a streaming query has got, read from its checkpoint (no Spark needed).

A batch is complete once `commits/<id>` exists; `offsets/<id>` holds the Kafka end
offsets that batch covered. The demo and tests use this to wait until the job has
processed everything a producer sent.
"""

from __future__ import annotations

import json
from pathlib import Path


def committed_offsets(checkpoint: str | Path) -> dict[str, dict[int, int]]:
    """topic -> partition -> next offset to read, as of the last committed micro-batch."""
    root = Path(checkpoint)
    commits = [int(p.name) for p in (root / "commits").glob("[0-9]*") if p.name.isdigit()]
    if not commits:
        return {}
    lines = (root / "offsets" / str(max(commits))).read_text(encoding="utf-8").splitlines()
    offsets: dict[str, dict[int, int]] = {}
    # Line 1 is the log version, line 2 batch metadata, then one line per source.
    for line in lines[2:]:
        if not line.strip().startswith("{"):
            continue
        for topic, partitions in json.loads(line).items():
            offsets[topic] = {int(p): int(o) for p, o in partitions.items()}
    return offsets


def caught_up(checkpoint: str | Path, end_offsets: dict[str, dict[int, int]]) -> bool:
    """True when the last committed batch reached `end_offsets` on every partition."""
    done = committed_offsets(checkpoint)
    return all(
        done.get(topic, {}).get(partition, 0) >= end
        for topic, partitions in end_offsets.items()
        for partition, end in partitions.items()
    )

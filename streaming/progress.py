"""How far a streaming query has got, read from its checkpoint (no Spark needed).

A batch is complete once `commits/<id>` exists; `offsets/<id>` holds the Kafka end
offsets that batch covered. The demo and tests use this to wait until the job has
processed everything a producer sent.
"""

from __future__ import annotations

import json
from pathlib import Path


def source_offsets(text: str) -> dict[str, dict[str, int]]:
    """topic -> partition -> next offset, from the text of an `offsets/<id>` file.

    Line 1 is the log version, line 2 the batch's metadata, then one line per source (JSON,
    or `-` for a source without offsets yet).
    """
    offsets: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        if line.strip().startswith("{"):
            for topic, partitions in json.loads(line).items():
                offsets[topic] = {str(p): int(o) for p, o in partitions.items()}
    return offsets


def committed_offsets(checkpoint: str | Path) -> dict[str, dict[int, int]]:
    """topic -> partition -> next offset to read, as of the last committed micro-batch."""
    root = Path(checkpoint)
    commits = [int(p.name) for p in (root / "commits").glob("[0-9]*") if p.name.isdigit()]
    if not commits:
        return {}
    text = (root / "offsets" / str(max(commits))).read_text(encoding="utf-8")
    return {
        topic: {int(p): o for p, o in partitions.items()}
        for topic, partitions in source_offsets(text).items()
    }


def caught_up(checkpoint: str | Path, end_offsets: dict[str, dict[int, int]]) -> bool:
    """True when the last committed batch reached `end_offsets` on every partition."""
    done = committed_offsets(checkpoint)
    return all(
        done.get(topic, {}).get(partition, 0) >= end
        for topic, partitions in end_offsets.items()
        for partition, end in partitions.items()
    )

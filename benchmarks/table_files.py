"""Does the stream's Delta lookup slow down as a table gathers small files?

Every micro-batch appends a file or two to `telemetry`, and nothing compacts them until
`pitstop maintain` runs. This grows a table of narrow, date-ordered files (each covering a
few days, as a micro-batch's file does) to 100, 1,000, 5,000 and 20,000 files. At each size
it times what the stream does every micro-batch: a small append, then a read filtered to the
last 75 days (the lookup's reach). Medians of 5.

Run: python benchmarks/table_files.py [--sizes 100,1000,5000,20000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import load_config  # noqa: E402

DAY0 = "2020-01-01"
TODAY = 20_000  # days after DAY0 of the "current" micro-batch: past every grown file


def main(argv: list[str] | None = None) -> int:
    from pyspark.sql import functions as F

    from streaming.session import build_spark_session

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,5000,20000", help="file counts to reach")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    spark = build_spark_session(load_config("local"), app_name="pitstop-table-files")
    root = Path(tempfile.mkdtemp(prefix="pitstop-table-files-"))
    path = str(root / "telemetry")
    day0 = F.lit(DAY0).cast("date")

    def rows(count: int, first_day: int, days: int, files: int):
        day = (first_day + F.col("id") * days / count).cast("int")
        return (
            spark.range(count)
            .select(
                (F.col("id") % 200).cast("string").alias("battery_id"),
                F.date_add(day0, day).alias("date"),
                F.rand().alias("daily_cycles_used"),
            )
            .repartitionByRange(files, "date")
        )

    print(f"load average {os.getloadavg()}")
    try:
        grown = 0
        for size in sizes:
            added = size - grown
            rows(added * 50, grown // 4, max(1, added // 4), added).write.format("delta").mode(
                "append"
            ).save(path)
            grown = size
            reads, appends = [], []
            for _ in range(5):
                started = time.perf_counter()
                rows(2000, TODAY, 1, 1).write.format("delta").mode("append").save(path)
                appends.append(time.perf_counter() - started)
                started = time.perf_counter()
                spark.read.format("delta").load(path).where(
                    F.col("date") >= F.date_add(day0, TODAY - 75)
                ).count()
                reads.append(time.perf_counter() - started)
            print(
                f"{size:>7,} files: filtered read after a commit {statistics.median(reads):.2f} s,"
                f" append {statistics.median(appends):.2f} s",
                flush=True,
            )
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

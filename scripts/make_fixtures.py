"""Record the small replay fixtures in tests/fixtures/ (run with `make fixtures`).

Writes, from seeds alone:
- tests/fixtures/risk-model/      a small trained LSTM with quantile heads and a calibrated
                                  failure risk, saved as an MLflow pyfunc folder;
- tests/fixtures/small-fleet/     20 batteries x 180 days as wire JSONL and lab-schema CSV,
                                  the simulator's ground truth, and the battery alerts the
                                  pipeline must produce from each file with each model:
                                  expected-alerts-{jsonl,csv}.csv with tests/fixtures/model/
                                  (a version registered before quantiles, kept as it was: the
                                  stream must go on scoring such versions) and
                                  expected-alerts-risk-{jsonl,csv}.csv with the risk model.
The replay test (tests/integration/test_fixture_replay.py) must reproduce them exactly.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIXTURES = ROOT / "tests" / "fixtures"
LEGACY_MODEL_DIR = FIXTURES / "model"
MODEL_DIR = FIXTURES / "risk-model"
FLEET_DIR = FIXTURES / "small-fleet"
ALERT_COLUMNS = ["battery_id", "car_id", "status", "alert_date", "predicted_failure_date"]
# Fleet and model per recording: (file, kind), then (model folder, suffix of the CSV).
RECORDINGS = (("battery-telemetry.jsonl", "jsonl"), ("battery-telemetry.csv", "csv"))
MODELS = ((LEGACY_MODEL_DIR, ""), (MODEL_DIR, "risk-"))


def expected_alerts(cfg):
    """The alerts table of a replay, in a stable order and the columns a test compares."""
    from core.lake import read_table

    frame = read_table(cfg, "battery_alerts")[ALERT_COLUMNS].astype(str)
    return frame.sort_values(["battery_id", "alert_date"], ignore_index=True)


def main() -> None:
    import mlflow

    from apps.training_data import simulated_readings
    from models.training.rnn import train_rnn
    from simulator.run import run_simulation
    from streaming.replay import run_replay
    from streaming.session import build_spark_session
    from tests.conftest import make_test_config

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        cfg = make_test_config(work)
        # Enough batteries that the validation period holds failures to calibrate on.
        result = train_rnn(
            cfg, simulated_readings(80, 300, seed=101), epochs=3, max_windows=3000, seed=0
        )
        shutil.rmtree(MODEL_DIR, ignore_errors=True)
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{result.model_name}/{result.version}", dst_path=str(MODEL_DIR)
        )

        run_simulation(
            cfg,
            sink="files",
            batteries=20,
            days=180,
            seed=42,
            failure_rate=0.1,
            output_dir=work / "sim",
            notes=False,
        )
        shutil.rmtree(FLEET_DIR, ignore_errors=True)
        FLEET_DIR.mkdir(parents=True)
        for name, _ in RECORDINGS:
            shutil.copyfile(work / "sim" / name, FLEET_DIR / name)
        shutil.copytree(work / "sim" / "truth", FLEET_DIR / "truth")

        spark = build_spark_session(cfg)
        for model, prefix in MODELS:
            for name, kind in RECORDINGS:
                out = work / f"replay-{prefix}{kind}"
                replayed = run_replay(spark, cfg, FLEET_DIR / name, out, str(model))
                path = FLEET_DIR / f"expected-alerts-{prefix}{kind}.csv"
                expected_alerts(replayed).to_csv(path, index=False)
        spark.stop()
    print(f"Fixtures written under {FIXTURES}")


if __name__ == "__main__":
    main()

"""The alert MERGE is idempotent: a micro-batch replayed after its MERGE committed (the job
was killed before its checkpoint) changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.alerts import query_alerts
from streaming import tables
from tests.component.test_alert_ack import alert_row, update_alerts
from tests.conftest import make_test_config

pytestmark = pytest.mark.component


def test_a_replayed_batch_opens_no_alert_twice(spark, tmp_path):
    cfg = make_test_config(tmp_path)
    path = tables.ensure_tables(spark, cfg)[tables.ALERTS]
    alerts = [alert_row("00000000000000a1", 1, 27)]
    assert update_alerts(path, alerts) == 1
    assert update_alerts(path, alerts) == 0
    every = query_alerts(cfg, include_closed=True)
    assert list(every["alert_id"]) == ["00000000000000a1"]
    assert list(every["status"]) == ["open"]


def test_a_replayed_batch_does_not_open_again_an_alert_it_opened_closed(spark, tmp_path):
    # B1 is predicted to fail from 1 March, and C1 got a new battery on 10 March in the same
    # batch: the alert is stored closed at once. Replaying the batch must not add it again.
    cfg = make_test_config(tmp_path)
    path = tables.ensure_tables(spark, cfg)[tables.ALERTS]
    alerts = [alert_row("00000000000000a1", 1, 27)]
    replaced = [("C1", "B2", dt.date(2024, 3, 10))]
    update_alerts(path, alerts, replaced)
    update_alerts(path, alerts, replaced)
    every = query_alerts(cfg, include_closed=True)
    assert list(every["alert_id"]) == ["00000000000000a1"]
    assert list(every["status"]) == ["closed"]
    assert list(every["close_reason"]) == ["replaced"]

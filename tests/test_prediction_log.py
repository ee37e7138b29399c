"""The prediction log's files: one JSON record per line, whatever a customer id contains."""

import json
from pathlib import Path

from churn.monitoring.prediction_log import PredictionLogWriter, closed_files


def test_every_record_stays_on_its_own_line(tmp_path: Path):
    records = [
        {"customer_id": "plain", "features": {"plan": "basic", "age": 30}},
        # JSON allows these raw inside strings; str.splitlines() would cut the line at each.
        {"customer_id": "a\u2028b\u2029c\x85d", "features": {"plan": "pro\u00e9", "age": 41}},
        {"customer_id": 'tab\there "quoted" \\ back', "features": {"plan": None, "age": 0.5}},
    ]
    writer = PredictionLogWriter(tmp_path, flush_seconds=60)
    writer.write(records)
    writer.close()
    [published] = list(closed_files(tmp_path))
    lines = published.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records

"""Parses OpenMetrics text (stdin) with the Prometheus client library's own parser and prints the
samples as JSON: {"name{label=value,...}": value}. Fails on text the parser rejects."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))

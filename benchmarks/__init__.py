"""mqttgate benchmark harness: `python -m benchmarks <scenario...>` (see README.md)."""

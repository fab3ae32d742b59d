"""The three source folders install under the mqttgate namespace."""

import importlib


def test_layers_import_under_namespace() -> None:
    for name in ("mqttgate.codec", "mqttgate.policy", "mqttgate.proxy"):
        module = importlib.import_module(name)
        assert module.__name__ == name

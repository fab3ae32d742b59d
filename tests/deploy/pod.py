"""A pod's mqttgate files on the host: the example overlay's ConfigMap and Secrets, laid out
under a temporary root exactly as the projected volume lays them out under /etc/mqttgate.

Only the listen/upstream addresses are rewritten (a test cannot bind 0.0.0.0:8883), and
each rewrite must hit exactly once, so the rest of the shipped config.yaml runs unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .manifests import KUBERNETES, lay_out_pod_files, render, secret_data

EXAMPLE = KUBERNETES / "overlays" / "example"
CONFIG_IN_POD = PurePosixPath("/etc/mqttgate/config.yaml")
SHIPPED_MQTTS_BIND = '"0.0.0.0:8883"'
SHIPPED_METRICS_BIND = '"0.0.0.0:9100"'
SHIPPED_UPSTREAM = '"127.0.0.1:1883"'
EXAMPLE_USER = "demo"
EXAMPLE_PASSWORD = "change-me"  # the example users Secret's documented password


@dataclass
class PodFiles:
    root: Path
    config: Path
    ca_file: Path


def pod_files(root: Path, rewrites: dict[str, str]) -> PodFiles:
    resources = render(EXAMPLE)
    placed = lay_out_pod_files(resources, "mqttgate", root)
    config = placed[CONFIG_IN_POD]
    text = config.read_text(encoding="utf-8")
    for old, new in rewrites.items():
        assert text.count(old) == 1, f"{old} must occur once in the shipped config.yaml"
        text = text.replace(old, new)
    config.write_text(text, encoding="utf-8")
    ca_file = root / "ca.crt"
    ca_file.write_bytes(secret_data(resources, "mqttgate-tls")["ca.crt"])
    return PodFiles(root=root, config=config, ca_file=ca_file)

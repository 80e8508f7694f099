"""Time series into Prometheus, from plain Python data."""

from __future__ import annotations

import math
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .services import services


@dataclass(frozen=True)
class Series:
    name: str
    labels: dict[str, str]
    samples: list[tuple[float, float]] = field(default_factory=list)  # (unix seconds, value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def openmetrics(series: Iterable[Series]) -> str:
    """OpenMetrics text: samples of one metric family together, each series in time order."""
    families: dict[str, list[Series]] = defaultdict(list)
    for one in series:
        families[one.name].append(one)
    lines = []
    for name, members in families.items():
        for one in members:
            labels = ",".join(f'{key}="{_escape(value)}"' for key, value in sorted(one.labels.items()))
            for timestamp, value in sorted(one.samples):
                lines.append(f"{name}{{{labels}}} {_number(value)} {timestamp:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def load_series(series: Iterable[Series]) -> None:
    """Load the series into the local Prometheus (TSDB blocks, then a restart: a few seconds).
    Load everything a test module needs at once."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "series.om"
        path.write_text(openmetrics(series))
        services("load-series", str(path))

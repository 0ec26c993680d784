"""The Prometheus text exposition format (0.0.4): metric families rendered by pure functions."""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from callwatch.downstream.streams import bucket_of

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    value: float
    labels: Labels = ()
    suffix: str = ""  # `_bucket`, `_sum`, `_count` of a histogram


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # counter, gauge, histogram
    help: str
    samples: list[Sample] = field(default_factory=list)


def number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in labels) + "}"


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help.replace(chr(92), chr(92) * 2)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        lines += [
            f"{family.name}{sample.suffix}{_labels(sample.labels)} {number(sample.value)}"
            for sample in family.samples
        ]
    return "\n".join(lines) + "\n"


def histogram(
    name: str, help: str, bounds: Sequence[float], counts: Mapping[str, int], total: float
) -> Family:
    """A histogram from the count in each bucket alone (keyed by its `le`, `+Inf` last)."""
    samples, running = [], 0
    for le in [*(f"{bound:g}" for bound in bounds), "+Inf"]:
        running += counts.get(le, 0)
        samples.append(Sample(running, (("le", le),), "_bucket"))
    samples += [Sample(total, (), "_sum"), Sample(running, (), "_count")]
    return Family(name, "histogram", help, samples)


def observe(values: Iterable[float], bounds: Sequence[float]) -> tuple[dict[str, int], float]:
    """The count in each bucket (by `le`) and the sum of `values`."""
    counts: dict[str, int] = {}
    total = 0.0
    for value in values:
        le = bucket_of(value, bounds)
        counts[le] = counts.get(le, 0) + 1
        total += value
    return counts, total

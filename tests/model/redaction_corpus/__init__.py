"""Transcripts written for the redaction corpus test, with their personal data marked.

Each `<locale>.txt` names its region, then holds one transcript per paragraph, one turn a line.
`[[KIND|value]]` marks personal data that must become `[KIND]`, `[[KEEP|value]]` a value that
must stay (dates, times, prices, order numbers, postcodes), `[[SPOKEN|value]]` a number said in
words, which redaction does not catch (counted apart, so the docs say how many it misses).

`uv run python -m tests.model.redaction_corpus` prints the table docs/data.md shows.
"""

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from callwatch.model import pii

HERE = Path(__file__).parent
MARK = re.compile(r"\[\[(\w+)\|(.*?)\]\]")
KEEP, SPOKEN = "KEEP", "SPOKEN"


@dataclass(frozen=True)
class Mark:
    start: int
    end: int
    kind: str


@dataclass(frozen=True)
class Line:
    locale: str
    region: str
    text: str
    marks: tuple[Mark, ...]


def lines() -> list[Line]:
    found = []
    for path in sorted(HERE.glob("*.txt")):
        content = path.read_text()
        header = re.search(r"^# region: (\w+)$", content, re.MULTILINE)
        assert header is not None, path
        for raw in content.splitlines():
            if not raw.strip() or raw.startswith("#"):
                continue
            text, marks, last = [], [], 0
            size = 0
            for match in MARK.finditer(raw):
                before = raw[last : match.start()]
                text.append(before)
                size += len(before)
                kind, value = match.groups()
                marks.append(Mark(size, size + len(value), kind))
                text.append(value)
                size += len(value)
                last = match.end()
            text.append(raw[last:])
            found.append(Line(path.stem, header.group(1), "".join(text), tuple(marks)))
    return found


@dataclass
class Score:
    """Per kind: marked values, those replaced by their own kind, finds that were no such value
    (a kept value touched, or text with nothing marked), and kept values touched."""

    marked: Counter[str] = field(default_factory=Counter)
    caught: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)
    false: Counter[str] = field(default_factory=Counter)
    kept: int = 0
    kept_touched: int = 0
    spoken: int = 0
    spoken_caught: int = 0
    misses: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    def recall(self, kind: str) -> float:
        return self.caught[kind] / self.marked[kind]

    def false_rate(self, kind: str) -> float:
        return self.false[kind] / self.found[kind] if self.found[kind] else 0.0

    def table(self) -> str:
        rows = [
            "| kind | marked | caught | recall | found | false positives | false-positive rate |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for kind in pii.KINDS:
            rows.append(
                f"| {kind} | {self.marked[kind]} | {self.caught[kind]} | "
                f"{self.recall(kind):.3f} | {self.found[kind]} | {self.false[kind]} | "
                f"{self.false_rate(kind):.3f} |"
            )
        rows.append(
            f"\nvalues to keep (dates, times, prices, order numbers, postcodes): {self.kept}, "
            f"touched: {self.kept_touched}; numbers said in words: {self.spoken}, "
            f"caught: {self.spoken_caught}"
        )
        return "\n".join(rows)


def score(corpus: list[Line]) -> Score:
    result = Score()
    for line in corpus:
        finds = pii.find(line.text, line.region)
        for mark in line.marks:
            over = [f for f in finds if f.start < mark.end and mark.start < f.end]
            covered = [f for f in over if f.start <= mark.start and f.end >= mark.end]
            if mark.kind == KEEP:
                result.kept += 1
                result.kept_touched += bool(over)
            elif mark.kind == SPOKEN:
                result.spoken += 1
                result.spoken_caught += bool(covered)
            else:
                result.marked[mark.kind] += 1
                if any(f.kind == mark.kind for f in covered):
                    result.caught[mark.kind] += 1
                else:
                    result.misses.append(
                        f"{line.locale} {mark.kind} {line.text[mark.start : mark.end]!r}"
                    )
        for f in finds:
            result.found[f.kind] += 1
            if not any(
                m.kind == f.kind and m.start < f.end and f.start < m.end for m in line.marks
            ):
                result.false[f.kind] += 1
                result.wrong.append(f"{line.locale} {f.kind} {line.text[f.start : f.end]!r}")
    return result

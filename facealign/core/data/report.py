"""The outcome of reading data: what was accepted, what was rejected and why.

The ``on_error`` policy lives here too: "skip" keeps going and reports every
reject, "fail" stops at the first one with a message naming the file.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Literal

from facealign.core.data.records import FaceRecord, Reject

OnError = Literal["skip", "fail"]
ON_ERROR_CHOICES = ("skip", "fail")


class DataError(Exception):
    """Input that cannot be used: a rejected face under on_error="fail", or a
    source that cannot be read at all (its root or a named file is missing)."""

    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file = str(file)
        self.reason = reason


def check_policy(on_error: str) -> None:
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")


def enforce(reject: Reject, on_error: OnError) -> Reject:
    """Returns the reject under "skip"; raises DataError under "fail"."""
    if on_error == "fail":
        raise DataError(reject.file, reject.reason)
    return reject


@dataclasses.dataclass
class DataReport:
    """Counts and rejects of one or more sources; printable with ``lines()``."""

    accepted: int = 0
    rejects: list[Reject] = dataclasses.field(default_factory=list)
    # (dataset, subset) -> accepted faces
    per_subset: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    box_sources: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    landmark_counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    @property
    def rejected(self) -> int:
        return len(self.rejects)

    def add(self, item: FaceRecord | Reject) -> None:
        if isinstance(item, Reject):
            self.rejects.append(item)
            return
        self.accepted += 1
        self.per_subset[(item.dataset, item.subset)] += 1
        self.box_sources[item.box_source] += 1
        self.landmark_counts[item.num_landmarks] += 1

    def merge(self, other: DataReport) -> None:
        self.accepted += other.accepted
        self.rejects.extend(other.rejects)
        self.per_subset.update(other.per_subset)
        self.box_sources.update(other.box_sources)
        self.landmark_counts.update(other.landmark_counts)

    def rejects_per_subset(self) -> collections.Counter:
        return collections.Counter((r.dataset, r.subset) for r in self.rejects)

    def lines(self) -> list[str]:
        """The human-readable summary `facealign data check` prints."""
        out = [f"accepted: {_faces(self.accepted)}", f"rejected: {self.rejected:,}"]
        rejected_here = self.rejects_per_subset()
        keys = sorted(set(self.per_subset) | {k for k in rejected_here if k[1] is not None})
        if keys:
            width = max(len(f"{d}:{s}") for d, s in keys)
            out.append(f"  {'subset':<{width}}  {'accepted':>8}  {'rejected':>8}")
            for key in keys:
                out.append(f"  {key[0] + ':' + key[1]:<{width}}  "
                           f"{self.per_subset[key]:>8,}  {rejected_here[key]:>8,}")
        if self.landmark_counts:
            counts = ", ".join(f"{n} ({_faces(c)})"
                               for n, c in sorted(self.landmark_counts.items()))
            out.append(f"landmarks per face: {counts}")
        if self.box_sources:
            sources = ", ".join(f"{s} {c:,}" for s, c in sorted(self.box_sources.items()))
            out.append(f"face boxes: {sources}")
        if self.rejects:
            out.append("rejects:")
            out.extend(f"  {r.file}: {r.reason}" for r in self.rejects)
        return out


def _faces(count: int) -> str:
    return f"{count:,} face{'' if count == 1 else 's'}"

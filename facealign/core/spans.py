"""Spans and versions of the data sources, as TFX's file-based ExampleGen names them.

A source folder may hold `{SPAN}` (and `{VERSION}`) in its path, e.g.
`arrivals/{SPAN}/{VERSION}`: each span is a batch of faces that arrived
together (a month's annotations, a new camera), each version a re-delivery of
that batch. One run ingests one span, the latest or a given one, at its
latest version, as TFX's ExampleGen does. The box CSVs and the COCO
annotation file may hold the same placeholders.

Every run also fingerprints the files it reads, spanned or not: the
fingerprint is a parameter of the ingesting execution, so a changed folder is
read again instead of being a silent cache hit.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import re

from facealign.core.data.report import DataError

SPAN_SPEC = "{SPAN}"
VERSION_SPEC = "{VERSION}"
LATEST = -1           # a requested span meaning "the latest one found"
UNSPANNED = 0         # the span of a source without {SPAN} (TFX: 0)
# Beside Augment's crops: {"span", "version", "raw_examples"}, read by the Trainer, which
# sees file patterns only, to record the spans a model trained on
LABEL_FILE = "span.json"


class SpanError(DataError):
    """No span to ingest: a spanned source is empty, or lacks the requested span."""


@dataclasses.dataclass(frozen=True)
class Resolution:
    """What one run ingests: concrete sources, their span and version, and a fingerprint."""

    sources: list[dict]        # data.sources entries with {SPAN}/{VERSION} filled in
    span: int
    version: int | None        # None when no source has {VERSION}
    fingerprint: str


def is_spanned(source: dict) -> bool:
    return SPAN_SPEC in source["root"]


def _pattern_regex(pattern: str) -> re.Pattern:
    parts = re.split(r"(\{SPAN\}|\{VERSION\})", os.path.normpath(pattern))
    regex = "".join({SPAN_SPEC: r"(?P<span>\d+)", VERSION_SPEC: r"(?P<version>\d+)"}.get(p)
                    or re.escape(p) for p in parts)
    return re.compile(regex + r"\Z")


def available(root_pattern: str) -> dict[int, set[int | None]]:
    """{span: {versions}} of the folders matching a root pattern ({None} without {VERSION})."""
    if VERSION_SPEC in root_pattern and SPAN_SPEC not in root_pattern:
        raise SpanError(root_pattern, f"{VERSION_SPEC} needs {SPAN_SPEC} in the same path")
    regex = _pattern_regex(root_pattern)
    found: dict[int, set[int | None]] = {}
    wildcard = root_pattern.replace(SPAN_SPEC, "*").replace(VERSION_SPEC, "*")
    for path in glob.glob(wildcard):
        match = regex.match(os.path.normpath(path))
        if match and os.path.isdir(path):
            version = match.groupdict().get("version")
            found.setdefault(int(match["span"]), set()).add(
                None if version is None else int(version))
    return found


def fill(text: str, span: int, version: int | None) -> str:
    text = text.replace(SPAN_SPEC, str(span))
    return text if version is None else text.replace(VERSION_SPEC, str(version))


def fingerprint(paths: list[str]) -> str:
    """A digest of every file under the given folders and files: names, sizes, modification
    times (as TFX's fingerprint, without reading the bytes)."""
    digest, count, total = hashlib.sha256(), 0, 0
    for top in sorted(set(paths)):
        files = ([top] if os.path.isfile(top) else
                 sorted(os.path.join(folder, name) for folder, _, names in os.walk(top)
                        for name in names))
        for path in files:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            count, total = count + 1, total + stat.st_size
    return f"files:{count},bytes:{total},sha256:{digest.hexdigest()[:32]}"


def resolve(sources: list[dict], span: int = LATEST) -> Resolution:
    """The span (the requested one, or the latest any spanned source has) at its latest
    version in every spanned source; the others as they are. SpanError when a spanned
    source has no span, or not the one asked for."""
    spanned = [s for s in sources if is_spanned(s)]
    if not spanned and span not in (LATEST, UNSPANNED):
        raise SpanError("data.range.span", f"is {span}, but no source root holds {SPAN_SPEC}")
    chosen, versions = UNSPANNED, {}
    if spanned:
        found = {s["name"]: available(s["root"]) for s in spanned}
        empty = [f"{s['name']} ({s['root']})" for s in spanned if not found[s["name"]]]
        if empty:
            raise SpanError("data.sources", "no span folder matches the source root of "
                            + ", ".join(empty))
        chosen = span if span != LATEST else max(max(f) for f in found.values())
        for source in spanned:
            if chosen not in found[source["name"]]:
                raise SpanError(source["root"], f"source {source['name']!r} has no span "
                                f"{chosen} (its spans: {sorted(found[source['name']])})")
            known = found[source["name"]][chosen] - {None}
            versions[source["name"]] = max(known) if known else None
    version = max((v for v in versions.values() if v is not None), default=None)
    resolved = []
    for source in sources:
        entry = dict(source)
        if source["name"] in versions:
            own = versions[source["name"]]
            entry["root"] = fill(source["root"], chosen, own)
            entry["boxes"] = [fill(b, chosen, own) for b in source.get("boxes") or []]
            if source.get("annotations"):
                entry["annotations"] = fill(source["annotations"], chosen, own)
        resolved.append(entry)
    read = [p for s in resolved
            for p in [s["root"], *(s.get("boxes") or []), s.get("annotations")]
            if p and os.path.exists(p)]
    return Resolution(resolved, chosen, version, fingerprint(read))

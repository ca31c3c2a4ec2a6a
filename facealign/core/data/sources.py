"""Reading whole datasets: the entry points for the pipeline and `facealign data check`.

``load_sources(config.data.sources, on_error)`` returns every accepted
FaceRecord and one DataReport. Per source: the format reader parses, every face
is checked (faces.py), then faces whose landmark count differs from the rest of
the source are rejected: one model needs one landmark scheme.
"""
from __future__ import annotations

import collections
import pathlib
from collections.abc import Iterable, Iterator, Sequence

from facealign.core.data.boxes import read_box_csvs
from facealign.core.data.coco import find_coco_faces
from facealign.core.data.faces import assemble_faces
from facealign.core.data.folder_300w import find_300w_faces
from facealign.core.data.layout import check_root
from facealign.core.data.ljson import find_ljson_faces
from facealign.core.data.records import FaceRecord, Reject
from facealign.core.data.report import DataError, DataReport, OnError, check_policy, enforce

FORMATS = ("300w", "ljson", "coco")
SOURCE_FIELDS = ("name", "format", "root", "boxes", "annotations")  # as in config.SourceConfig


def iter_faces(root, format: str = "300w", boxes: Sequence = (), annotations=None,
               name: str | None = None) -> Iterator[FaceRecord | Reject]:
    """Each face of one source, checked on its own, in a stable order.

    Rejects come first for the box CSVs, then in reading order. The landmark
    count across faces is not checked here (that needs all of them): use
    read_dataset for that. Raises DataError if the source cannot be read at all.
    """
    root = pathlib.Path(root)
    dataset = name or root.resolve().name
    if format == "300w":
        found = find_300w_faces(root, dataset)
    elif format == "ljson":
        found = find_ljson_faces(root, dataset)
    elif format == "coco":
        if annotations is None:
            raise DataError(str(root), "format coco needs the annotation JSON (annotations)")
        found = find_coco_faces(pathlib.Path(annotations), root, dataset)
    else:
        raise DataError(str(root), f"unknown format {format!r}; expected one of {FORMATS}")
    check_root(root)  # before reading the CSVs, whose rows are checked against root
    csv_boxes, csv_rejects = read_box_csvs(boxes, root, dataset)
    yield from csv_rejects
    yield from assemble_faces(found, dataset, csv_boxes)


def read_dataset(root, format: str = "300w", boxes: Sequence = (), annotations=None,
                 name: str | None = None, on_error: OnError = "skip"
                 ) -> tuple[list[FaceRecord], DataReport]:
    """All accepted faces of one source and its report.

    on_error "skip" reports every reject; "fail" raises DataError at the first.
    """
    check_policy(on_error)
    records = []
    report = DataReport()
    for item in iter_faces(root, format, boxes, annotations, name):
        if isinstance(item, Reject):
            report.add(enforce(item, on_error))
        else:
            records.append(item)
    records, count_rejects = split_by_landmark_count(records)
    for reject in count_rejects:
        report.add(enforce(reject, on_error))
    for record in records:
        report.add(record)
    return records, report


def split_by_landmark_count(records: Sequence[FaceRecord]) -> tuple[list[FaceRecord], list[Reject]]:
    """Keeps the faces with the source's landmark count (the most common; on a tie,
    the first face's) and rejects the others."""
    counts = collections.Counter(r.num_landmarks for r in records)
    if len(counts) <= 1:
        return list(records), []
    top = max(counts.values())
    expected = next(r.num_landmarks for r in records if counts[r.num_landmarks] == top)
    kept, rejects = [], []
    for r in records:
        if r.num_landmarks == expected:
            kept.append(r)
        else:
            rejects.append(Reject(str(r.annotation_path),
                                  f"{r.num_landmarks} landmarks, but the rest of the dataset has "
                                  f"{expected} ({counts[expected]} faces)", r.dataset, r.subset))
    return kept, rejects


def load_sources(sources: Iterable, on_error: OnError = "skip", base_dir=None
                 ) -> tuple[list[FaceRecord], DataReport]:
    """Every source's accepted faces, in source order, and one combined report.

    ``sources`` are facealign.core.config.SourceConfig objects, or anything with the
    attributes name, format, root, boxes, annotations (plain dicts work too).
    Relative paths are taken relative to ``base_dir`` (default: the current folder).
    Sources with different landmark counts cannot train one model: DataError.
    """
    base = pathlib.Path(base_dir) if base_dir is not None else pathlib.Path.cwd()
    records, report = [], DataReport()
    counts: dict[int, str] = {}
    for source in sources:
        if not isinstance(source, dict):
            source = {key: getattr(source, key, None) for key in SOURCE_FIELDS}
        annotations = source.get("annotations")
        source_records, source_report = read_dataset(
            base / source["root"], format=source.get("format") or "300w",
            boxes=[base / b for b in source.get("boxes") or ()],
            annotations=base / annotations if annotations else None,
            name=source.get("name"), on_error=on_error)
        if source_records:
            counts.setdefault(source_records[0].num_landmarks, source_records[0].dataset)
        records.extend(source_records)
        report.merge(source_report)
    if len(counts) > 1:
        described = ", ".join(f"{name}: {n}" for n, name in counts.items())
        raise DataError("data.sources", f"sources have different landmark counts ({described}); "
                        "one model needs one landmark scheme")
    return records, report

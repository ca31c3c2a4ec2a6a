"""Dataset readers: real annotated faces in, FaceRecords and a report of rejects out.

The pipeline calls ``load_sources(config.data.sources, config.data.on_error)``;
``facealign data check`` calls ``read_dataset`` on one folder.
"""
from facealign.core.data.records import (
                                    BOX_FROM_ANNOTATION,
                                    BOX_FROM_DETECTOR,
                                    BOX_FROM_LANDMARKS,
                                    FaceRecord,
                                    Reject,
)
from facealign.core.data.report import DataError, DataReport
from facealign.core.data.sources import FORMATS, iter_faces, load_sources, read_dataset

__all__ = [
    "BOX_FROM_ANNOTATION", "BOX_FROM_DETECTOR", "BOX_FROM_LANDMARKS", "FORMATS",
    "DataError", "DataReport", "FaceRecord", "Reject",
    "iter_faces", "load_sources", "read_dataset",
]

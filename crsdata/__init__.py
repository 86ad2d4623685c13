"""Offline CRS corpora (ReDial, OpenDialKG, INSPIRED; GoRecDial and TG-ReDial when present) and the item catalog."""

from crsdata.loaders import DATASETS, DEFAULT_DATASET, available_datasets, load_dialogues, load_samples
from crsdata.paths import DataError, data_root
from crsdata.schema import Dialogue, RecSample, Turn

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "DataError",
    "Dialogue",
    "RecSample",
    "Turn",
    "available_datasets",
    "data_root",
    "load_dialogues",
    "load_samples",
]

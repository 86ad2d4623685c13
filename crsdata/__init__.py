"""Offline CRS corpora (ReDial, OpenDialKG, INSPIRED; GoRecDial and TG-ReDial when present) and the item catalog."""

from crsdata.loaders import DEFAULT_DATASET, available_datasets, load_dialogues, load_samples
from crsdata.paths import DataError, data_root
from crsdata.registry import DatasetSpec, dataset_spec, datasets, register
from crsdata.schema import Dialogue, RecSample, Turn

__all__ = [
    "DEFAULT_DATASET",
    "DataError",
    "DatasetSpec",
    "Dialogue",
    "RecSample",
    "Turn",
    "available_datasets",
    "data_root",
    "dataset_spec",
    "datasets",
    "load_dialogues",
    "load_samples",
    "register",
]

"""Download the corpora from their original public locations (for users with internet).

Never called by tests or at run time: loaders only read local files and, when a
file is missing, raise an error naming this command. Every file is checked
against its sha256 after download.
"""

from __future__ import annotations

import hashlib
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from crsdata.registry import dataset_spec


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(dataset: str, dest: Path) -> list[Path]:
    """Fetch every file of ``dataset`` into ``dest/dataset`` and verify it.

    Args:
        dataset: A registered dataset (its spec's ``remote`` files).
        dest: The data root to populate.

    Returns:
        The files written.

    Raises:
        DataError: Unknown dataset.
        ValueError: A checksum mismatch (the bad file is removed).
    """
    spec = dataset_spec(dataset)
    out_dir = spec.path(dest)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, remote in spec.remote.items():
        target = out_dir / name
        if not (target.exists() and sha256_of(target) == remote.sha256):
            with urllib.request.urlopen(remote.url) as resp, target.open("wb") as fh:  # noqa: S310
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=name) as bar:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        fh.write(block)
                        bar.update(len(block))
            got = sha256_of(target)
            if got != remote.sha256:
                target.unlink()
                raise ValueError(f"{name}: sha256 {got} != expected {remote.sha256}")
        if remote.unzip:
            with zipfile.ZipFile(target) as zf:
                zf.extractall(out_dir)
        written.append(target)
    return written

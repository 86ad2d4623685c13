"""Download the corpora from their original public locations (for users with internet).

Never called by tests or at run time: loaders only read local files and, when a
file is missing, raise an error naming this command. Every file is checked
against its sha256 after download.
"""

from __future__ import annotations

import hashlib
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

IEVALM = "https://raw.githubusercontent.com/RUCAIBox/iEvaLM-CRS/162e2f442fb0799550af587dce0285a2d5ca897f/data"
UNICRS = "https://raw.githubusercontent.com/wxl1999/UniCRS/f7d8f95104d6eba5371cfa845b243057a632079e/data"


@dataclass(frozen=True)
class Remote:
    """One downloadable file: where it comes from and what it must hash to."""

    url: str
    sha256: str
    unzip: bool = False


MANIFEST: dict[str, dict[str, Remote]] = {
    "redial": {
        "valid_data.jsonl": Remote(f"{IEVALM}/redial/valid_data.jsonl", "69b7cf81d0671c3dd0a1167df2e7e1e51ca76b3edce97022343d68f6974510a1"),
        "valid_data_processed.jsonl": Remote(
            f"{IEVALM}/redial_eval/valid_data_processed.jsonl", "20f0672f83c2be2f1f6c43867ba0ab1c2c483ca221a360ddc58679294afa472f"
        ),
        "test_data_processed.jsonl": Remote(
            f"{IEVALM}/redial_eval/test_data_processed.jsonl", "8c8855aa872ade097691bb9feaeed6aaf4cfafa21575ebfcd8271b1e263f352b"
        ),
        "id2info.json": Remote(f"{IEVALM}/redial/id2info.json", "7bdfe9a9c7f1b4d59aa9a5aeba0029071fd5a7232b61c8257212a335ffe424f7"),
        "item_ids.json": Remote(f"{IEVALM}/redial/item_ids.json", "73d1676353fff02ba6cb2cab093b2977579666a152621f1248d07791d7a3b0a6"),
        "entity2id.json": Remote(f"{IEVALM}/redial/entity2id.json", "d530bd465e7a0edb19257d444d9665fda8271ec4d5aff235a417cad13848c52f"),
        "entity2type.json": Remote(f"{IEVALM}/redial/entity2type.json", "e75311e2e1eb3b3560302268c964cb44aaf1467e6a4d186baf2267ad20ea984b"),
        "kg.json": Remote(f"{IEVALM}/redial/kg.json", "e3698d042926defb656b25873d4144d255aa914a575fcafa8af14cf434c867ff"),
        "relation2id.json": Remote(f"{IEVALM}/redial/relation2id.json", "028b39258502a41d81e7176f7d9f77b1b342c6a9dc42b5cf214309e590522027"),
    },
    "opendialkg": {
        **{
            f"{s}_data_processed.jsonl": Remote(f"{IEVALM}/opendialkg_eval/{s}_data_processed.jsonl", h)
            for s, h in (
                ("train", "472243b8c12c8e1eb44598d094e8b6e03a148ce13dc3f58ea9b323ba4ed27018"),
                ("valid", "21bbf814ad76f36f058678b1bf4e9a77ca01ca00766bd8eb39780d1163f74bd2"),
                ("test", "055eb9481823517099f0109929ea640662d58287af708e99983d9b97e2ce51a4"),
            )
        },
        "dialog_Books.jsonl": Remote(
            f"{IEVALM}/opendialkg/dialog_Books.jsonl", "e68fb6109ac56ffea10f21bf6350d9e024c7b8ee9abc6a3b2a8e35f31ce3f7f6"
        ),
        "id2info.json": Remote(f"{IEVALM}/opendialkg/id2info.json", "a8ce8de8c957a1d339c80ff548e13eb32a66ee639243f67bc479ce09ad1c299e"),
        "item_ids.json": Remote(f"{IEVALM}/opendialkg/item_ids.json", "c7f7d151066c41a2b70d3df9b414e1d3c67ac48e978e222a90319e1dbfa7e98f"),
        "entity2id.json": Remote(f"{IEVALM}/opendialkg/entity2id.json", "394e2e101463052c6b41f14d87b1420f936528c6f81ed50c22388c51fcda4e81"),
        "kg.json": Remote(f"{IEVALM}/opendialkg/kg.json", "7bb2ab8d4ba6906d2f1a15b26c7a74ddc9d4cc1ddeb02cfa29ec2f5977fecb4d"),
        "relation2id.json": Remote(
            f"{IEVALM}/opendialkg/relation2id.json", "0722a517e68359d28182b897282fdefd9ceced47da315ad934f8f298a41a76e1"
        ),
    },
    "inspired": {
        "dev.jsonl": Remote(f"{UNICRS}/inspired/dev.jsonl", "75feafb0d35a9203644ba992cc98180b878c16ec210d1d29b2d5d1698a137fd7"),
        "test.jsonl": Remote(f"{UNICRS}/inspired/test.jsonl", "01d000af899e78db2329eadc48ebecb683f1b37b0a35e7230d324a62576481e5"),
        "relation_set.json": Remote(
            f"{UNICRS}/inspired/relation_set.json", "95173c74601bc770963e90d5812fc9aac6e8cbe8179a8a84a823f1bea99b34c8"
        ),
    },
    # CRSLab's preprocessed releases (cloud drive links and sha256 from CRSLab's resources.py).
    "gorecdial": {
        "gorecdial.zip": Remote(
            "https://pkueducn-my.sharepoint.com/:u:/g/personal/franciszhou_pku_edu_cn/EYmobnFBox1LnGKGW4TMCk8BW6rnjdAZNVsNo8uJ8ZsJLg?download=1",
            "66035bf24862535a072cc6778a3affd541ae0a4aa1fe31455d4fb063b301f087",
            unzip=True,
        ),
    },
    "tgredial": {
        "tgredial_pkuseg.zip": Remote(
            "https://pkueducn-my.sharepoint.com/:u:/g/personal/franciszhou_pkueducn_onmicrosoft_com/Ee7FleGfEStCimV4XRKvo-kBR8ABdPKo0g_XqgLJPxP6tg?download=1",
            "8b7e23205778db4baa012eeb129cf8d26f4871ae98cdfe81fde6adc27a73a8d6",
            unzip=True,
        ),
    },
}


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
        dataset: A key of :data:`MANIFEST`.
        dest: The data root to populate.

    Returns:
        The files written.

    Raises:
        KeyError: Unknown dataset.
        ValueError: A checksum mismatch (the bad file is removed).
    """
    if dataset not in MANIFEST:
        raise KeyError(f"unknown dataset {dataset!r}; known: {', '.join(MANIFEST)}")
    out_dir = dest / dataset
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, remote in MANIFEST[dataset].items():
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

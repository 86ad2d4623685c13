"""The data layer on the real corpora and on fixtures in CRSLab's formats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crsdata import DataError, load_dialogues, load_samples
from crsdata.loaders import available_datasets, seeded_split
from crsdata.stats import corpus_stats
from tests.conftest import FIXTURES


def _lines(path: Path) -> int:
    return sum(1 for line in path.open() if line.strip())


@pytest.mark.parametrize(
    ("dataset", "split", "file"),
    [
        ("redial", "test", "redial/test_data_processed.jsonl"),
        ("opendialkg", "train", "opendialkg/train_data_processed.jsonl"),
        ("opendialkg", "valid", "opendialkg/valid_data_processed.jsonl"),
        ("opendialkg", "test", "opendialkg/test_data_processed.jsonl"),
    ],
)
def test_processed_files_give_one_sample_per_line(real_root, dataset, split, file):
    samples = load_samples(dataset, split, real_root)
    assert len(samples) == _lines(real_root / file)
    first = json.loads((real_root / file).open().readline())
    s0 = samples[0]
    assert s0.dialog_id == str(first["dialog_id"])
    assert list(s0.targets) == list(dict.fromkeys(" ".join(x.split()) for x in first["rec"]))
    assert s0.response == " ".join(first["resp"].split())
    assert [t.text for t in s0.context] == [" ".join(c.split()) for c in first["context"] if c.strip()]


def test_redial_seeded_split_is_disjoint_deterministic_and_complete(real_root):
    train = {d.dialog_id for d in load_dialogues("redial", "train", real_root)}
    valid = {d.dialog_id for d in load_dialogues("redial", "valid", real_root)}
    assert train.isdisjoint(valid)
    assert len(load_samples("redial", "train", real_root)) + len(load_samples("redial", "valid", real_root)) == _lines(
        real_root / "redial/valid_data_processed.jsonl"
    )
    assert train == {d.dialog_id for d in load_dialogues("redial", "train", real_root)}
    assert 0.85 < len(train) / (len(train) + len(valid)) < 0.95


@pytest.mark.parametrize("dataset", ["redial", "opendialkg", "inspired", "opendialkg_books"])
def test_samples_are_recommender_turns_whose_context_excludes_the_answer(real_root, dataset):
    samples = load_samples(dataset, "test", real_root, limit=200)
    assert samples
    for s in samples:
        assert s.targets
        assert s.context, "a recommender turn always follows something"
        assert s.context[-1].role == "user" or dataset == "inspired"
        assert s.response not in [t.text for t in s.context[-1:]] or not s.response
        roles = [t.role for t in s.context]
        assert set(roles) <= {"user", "recommender"}


def test_roles_alternate_in_rebuilt_redial_dialogues(real_root):
    for dlg in load_dialogues("redial", "test", real_root)[:100]:
        roles = [t.role for t in dlg.turns]
        assert all(a != b for a, b in zip(roles, roles[1:], strict=False))
        assert roles[-1] == "recommender"


def test_stats_for_every_dataset(real_root):
    datasets = available_datasets(real_root)
    assert {"redial", "opendialkg", "inspired"} <= set(datasets)
    for ds in datasets:
        st = corpus_stats(ds, real_root)
        assert st.dialogues > 0 and st.utterances >= st.dialogues and st.items > 0
        assert st.avg_turns == pytest.approx(st.utterances / st.dialogues)
    assert corpus_stats("inspired", real_root).dialogues == 198  # 99 dev + 99 test


def test_seeded_split_partitions():
    parts = seeded_split([str(i) for i in range(101)], (0.8, 0.1, 0.1))
    assert sum(len(p) for p in parts) == 101
    assert set().union(*parts) == {str(i) for i in range(101)}
    assert parts == seeded_split([str(i) for i in reversed(range(101))], (0.8, 0.1, 0.1))


def test_gorecdial_crslab_format_fixture():
    train = load_dialogues("gorecdial", "train", FIXTURES / "crs")
    assert len(train) == 1
    turns = train[0].turns
    assert [t.role for t in turns] == ["user", "recommender", "user", "recommender"]
    assert turns[0].text == "hi i like space movies like Interstellar"
    assert turns[0].items == ("Interstellar",) and turns[0].entities == ("space",)
    samples = load_samples("gorecdial", "train", FIXTURES / "crs")
    assert [s.targets for s in samples] == [("Gravity",), ("The Martian",)]
    assert samples[1].context_items == ("Interstellar", "Gravity")


def test_tgredial_crslab_format_fixture():
    samples = load_samples("tgredial", "test", FIXTURES / "crs")
    assert len(samples) == 1
    assert samples[0].targets == ("星际穿越(2014)",)
    assert samples[0].context[0].text == "我 想 看 电影"


def test_malformed_jsonl_names_file_and_line(tmp_path):
    (tmp_path / "opendialkg").mkdir()
    good = {"dialog_id": 1, "turn_id": 1, "context": ["hi"], "entity": [], "rec": ["X"], "resp": "X"}
    (tmp_path / "opendialkg" / "id2info.json").write_text(json.dumps({"0": {"name": "X"}}))
    (tmp_path / "opendialkg" / "test_data_processed.jsonl").write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(DataError, match=r"test_data_processed.jsonl:2: malformed JSON"):
        load_dialogues("opendialkg", "test", tmp_path)
    (tmp_path / "opendialkg" / "test_data_processed.jsonl").write_text(json.dumps({"dialog_id": 1}) + "\n")
    with pytest.raises(DataError, match=r":1: record lacks context, rec, resp"):
        load_dialogues("opendialkg", "test", tmp_path)


def test_missing_file_names_the_download_command(tmp_path):
    (tmp_path / "opendialkg").mkdir()
    with pytest.raises(DataError, match=r"python -m crsdata download opendialkg"):
        load_dialogues("opendialkg", "valid", tmp_path)


def test_unknown_dataset_and_split():
    with pytest.raises(DataError, match="unknown dataset"):
        load_dialogues("nope", "test", FIXTURES / "crs")
    with pytest.raises(DataError, match="unknown split"):
        load_dialogues("gorecdial", "dev", FIXTURES / "crs")


def test_cli_stats_and_sample(real_root):
    out = subprocess.run([sys.executable, "-m", "crsdata", "stats", "redial"], capture_output=True, text=True, check=True).stdout
    assert "redial" in out and "#dialogues" in out
    out = subprocess.run([sys.executable, "-m", "crsdata", "sample"], capture_output=True, text=True, check=True).stdout
    assert "targets:" in out


def test_cli_bad_root_is_a_clear_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "crsdata", "--data-root", str(tmp_path / "nope"), "stats"], capture_output=True, text=True)
    assert res.returncode == 2
    assert "does not exist" in res.stdout and "Traceback" not in res.stderr

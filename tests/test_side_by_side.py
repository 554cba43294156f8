"""The side-by-side table of docs/fidelity.md (the authors' code against ours on the same data) is written by
scripts/side_by_side/accuracy.py from a committed snapshot, never by hand."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def side_by_side():
    import importlib.util
    spec = importlib.util.spec_from_file_location("side_by_side_accuracy",
                                                  ROOT / "scripts" / "side_by_side" / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_side_by_side_table_gives_each_codes_mean_and_sd_and_counts_failed_runs(tmp_path):
    accuracy = side_by_side()
    journal = tmp_path / "accuracy.jsonl"
    records = [{"code": "authors", "preset": "authors", "fidelity": None, "seed": s, "rc": 0, "wall_s": 100.0,
                "class_il": c, "task_il": 90.0, "class_il_forgetting": 60.0} for s, c in enumerate([30.0, 34.0])]
    records += [{"code": "ours", "preset": "authors", "fidelity": "reference", "seed": s, "rc": rc, "wall_s": 80.0,
                 "class_il": 33.0, "task_il": 91.0, "class_il_forgetting": 61.0, "git_commit": "abc123def",
                 "device_name": "Some CPU (AVX2)", "torch_version": "2.14.1"} for s, rc in enumerate([0, 0, 5])]
    records.append({**records[0], "class_il": 38.0})  # a rerun of seed 0 replaces the earlier record
    journal.write_text("".join(json.dumps(r) + "\n" for r in records))
    block = accuracy.doc_block(accuracy.make_snapshot(journal, "8805c74"))
    assert "| authors' code, ER-ACE + WSCL | 0, 1 | 36.0 ± 2.8 | 90.0 ± 0.0 | 60.0 ± 0.0 |" in block
    assert "| ours, `authors`, `reference` | 0, 1 (1 failed) | 33.0 ± 0.0 |" in block
    assert "`base`" not in block and "**Some CPU (AVX2)," in block and "`8805c74`" in block and "`abc123def`" in block
    records.append({**records[2], "seed": 3, "git_commit": "other"})
    journal.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(SystemExit, match="2 values of git_commit"):
        accuracy.make_snapshot(journal, "8805c74")


def test_the_fidelity_page_matches_its_committed_side_by_side_snapshot():
    """docs/fidelity.md's side-by-side table is docs/snapshot/side_by_side.json's."""
    accuracy = side_by_side()
    text = accuracy.DOC.read_text()
    assert accuracy.doc_with(text, accuracy.doc_block(json.loads(accuracy.SNAPSHOT.read_text()))) == text

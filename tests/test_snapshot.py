"""Published numbers from one source (wscl/study/snapshot.py): a snapshot of a study's runs and the README
table written from it."""
import json
from pathlib import Path

import pandas as pd
import pytest

from wscl.cli import main
from wscl.core.errors import RunResultError
from wscl.core.safe_io import atomic_write_text
from wscl.study.snapshot import make_snapshot, readme_block, readme_with

ROOT = Path(__file__).resolve().parent.parent
ACC = {("base", "reference"): [40.0, 44.0, 48.0], ("base", "corrected"): [41.0, 41.0, 41.0],
       ("full", "reference"): [70.0, 72.0, 74.0]}


def all_runs(tmp_path, commits=("abc123",), failures: dict | None = None) -> Path:
    rows = []
    for (preset, fidelity), values in ACC.items():
        for seed, acc in enumerate(values):
            rows.append({"benchmark": "seq-fashion-mnist", "buffer": 200, "method": "er_ace", "preset": preset,
                         "point": float("nan"), "fidelity": fidelity, "seed": seed, "device": "cpu",
                         "device_name": "Some CPU (AVX2)", "git_commit": commits[seed % len(commits)],
                         "class_il_final_avg_acc": acc, "class_il_forgetting": 10.0, "task_il_final_avg_acc": 90.0,
                         "in_table": True, "failure": (failures or {}).get((preset, fidelity, seed), "")})
    path = tmp_path / "all_runs.csv"
    atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False), sealed=True)
    return path


def test_the_readme_table_is_the_snapshots_means_and_sds_with_its_machine_and_commit(tmp_path):
    snapshot = make_snapshot(all_runs(tmp_path))
    assert len(snapshot["runs"]) == 9 and snapshot["git_commit"] == "abc123"
    block = readme_block(snapshot, "snap.json")
    assert "| `base` (ER-ACE alone) | 44.0 ± 4.0 | 41.0 ± 0.0 |" in block
    assert "| `full` (the paper's WSCL) | 72.0 ± 2.0 | – |" in block
    assert "seeds 0-2" in block and "**Some CPU (AVX2)," in block and "commit `abc123`" in block


def test_a_failed_seed_is_left_out_of_the_readme_cell_and_named(tmp_path):
    snapshot = make_snapshot(all_runs(tmp_path, failures={("base", "reference", 2): "collapsed at task 3"}))
    block = readme_block(snapshot, "snap.json")
    assert "| `base` (ER-ACE alone) | 42.0 ± 2.8 (failed: seed 2) | 41.0 ± 0.0 |" in block


def test_a_snapshot_needs_one_commit(tmp_path):
    with pytest.raises(RunResultError, match="2 git commits"):
        make_snapshot(all_runs(tmp_path, commits=("abc", "def")))


def test_readme_results_writes_the_block_and_check_finds_a_hand_edit(tmp_path, capsys):
    snap = tmp_path / "snap.json"
    assert main(["snapshot", "--runs", str(all_runs(tmp_path)), "--out", str(snap)]) == 0
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\n<!-- results: begin -->\nold\n<!-- results: end -->\n\nafter\n")
    assert main(["readme-results", "--snapshot", str(snap), "--readme", str(readme), "--check"]) == 9
    assert main(["readme-results", "--snapshot", str(snap), "--readme", str(readme)]) == 0
    assert "44.0 ± 4.0" in readme.read_text() and readme.read_text().endswith("\n\nafter\n")
    assert main(["readme-results", "--snapshot", str(snap), "--readme", str(readme), "--check"]) == 0
    readme.write_text(readme.read_text().replace("44.0 ± 4.0", "48.4 ± 3.6"))
    assert main(["readme-results", "--snapshot", str(snap), "--readme", str(readme), "--check"]) == 9
    with pytest.raises(RunResultError, match="exactly one results block"):
        readme_with("no markers", "x", readme)


def test_the_readme_matches_its_committed_snapshot():
    """The README ships the numbers of docs/snapshot/default.json (made with `make snapshot` after `make run`)."""
    snapshot_path = "docs/snapshot/default.json"
    snapshot = json.loads((ROOT / snapshot_path).read_text())
    readme = (ROOT / "README.md").read_text()
    assert readme_with(readme, readme_block(snapshot, snapshot_path), ROOT / "README.md") == readme


# -- the sweep paragraph (wscl/study/sweep_summary.py) ----------------------------------------------------------

SWEPT = {"defaults": {"wscl.stm.size": 200, "wscl.nrem.epochs": 1},
         "stm_size~400": {"wscl.stm.size": 400, "wscl.nrem.epochs": 1},
         "nrem_epochs~2": {"wscl.stm.size": 200, "wscl.nrem.epochs": 2}}
TUNING_MEANS = {"defaults": 60.0, "stm_size~400": 58.0, "nrem_epochs~2": 64.0}


def sweep_snapshot(failed_seed: int | None = None) -> dict:
    """A sweep of `full` over three points, `base` beside it and one ablation at the tuned point, 3 seeds."""
    test = {("full", "nrem_epochs~2"): [70.0, 71.0, 72.0], ("full", "defaults"): [66.0, 67.0, 68.0],
            ("full", "stm_size~400"): [60.0, 61.0, 65.0], ("base", ""): [50.0, 52.0, 51.0],
            ("no_nrem", "tuned"): [69.0, 69.5, 73.0]}
    runs = [{"benchmark": "s", "buffer": 200, "method": "er_ace", "preset": preset, "point": point, "seed": seed,
             "fidelity": "reference", "class_il_final_avg_acc": acc,
             "failure": "collapsed" if (preset, seed) == ("base", failed_seed) else ""}
            for (preset, point), values in test.items() for seed, acc in enumerate(values)]
    runs += [{**r, "method": "er", "class_il_final_avg_acc": 0.0} for r in runs if r["preset"] == "base"]  # not ours
    points = {name: {"settings": settings, "failed": [], "seeds": 3,
                     "tune_class_il_final_avg_acc_mean": TUNING_MEANS[name]} for name, settings in SWEPT.items()}
    machine = {"device": "cpu", "device_name": "Some CPU (AVX2)", "cpu_cores": 2}
    return {"git_commit": "abcdef1234567", "machine": machine,
            "runs": runs, "selection": {"s/buffer200/er_ace/full/reference": {
                "points": points, "selected": "nrem_epochs~2", "settings": SWEPT["nrem_epochs~2"]}}}


def test_the_sweep_paragraph_says_what_was_chosen_and_the_paired_differences():
    from wscl.study.comparisons import paired
    from wscl.study.sweep_summary import sweep_block
    text = " ".join(sweep_block(sweep_snapshot(), "sweep.json").split())
    assert "chose `wscl.nrem.epochs: 2` (tuning 64.0; the study's settings 60.0)" in text
    assert "tuned `full` **71.0 ± 1.0**" in text and "`base` 51.0 ± 1.0" in text
    vs_base = paired({0: 70.0, 1: 71.0, 2: 72.0}, {0: 50.0, 1: 52.0, 2: 51.0})
    assert f"+20.0 [{vs_base.low:+.1f}, {vs_base.high:+.1f}] (helps)" in text and vs_base.answer == "helps"
    assert "minus `no_nrem` +0.5" in text and "weakest point on the tuning split: `wscl.stm.size: 400`" in text
    assert "Some CPU (AVX2), 2 CPU cores" in text and "`abcdef1234`" in text and "seeds 0-2" in text
    failed = " ".join(sweep_block(sweep_snapshot(failed_seed=1), "sweep.json").split())
    assert "Failed runs, left out: base seed 1." in failed and "`base` 50.5 ± 0.7" in failed


def test_the_readme_matches_its_committed_sweep_snapshot():
    """The README's sweep paragraph is docs/snapshot/sweep.json's (made with `make snapshot-sweep`)."""
    from wscl.study.sweep_summary import readme_with_sweep, sweep_block
    snapshot_path = "docs/snapshot/sweep.json"
    snapshot = json.loads((ROOT / snapshot_path).read_text())
    readme = (ROOT / "README.md").read_text()
    assert readme_with_sweep(readme, sweep_block(snapshot, snapshot_path), ROOT / "README.md") == readme


# -- the ablation paragraph (wscl/study/ablation_summary.py) ---------------------------------------------------

ABLATION = {"full": [70.0, 72.0, 71.0, 73.0, 74.0], "no_nrem": [60.0, 61.5, 61.0, 62.5, 64.0],
            "no_rem": [70.5, 71.5, 71.5, 72.5, 74.5], "base": [50.0, 52.0, 51.0, 53.0, 54.0]}


def ablation_runs(tmp_path) -> Path:
    rows = [{"benchmark": "seq-fashion-mnist", "buffer": 200, "method": "er_ace", "preset": preset,
             "point": float("nan"), "fidelity": "reference", "seed": seed, "device": "cpu",
             "device_name": "Some CPU (AVX2)", "git_commit": "abc123", "class_il_final_avg_acc": acc,
             "class_il_forgetting": 10.0, "task_il_final_avg_acc": 90.0, "in_table": True,
             "failure": "collapsed at task 0" if (preset, seed) == ("base", 2) else ""}
            for preset, values in ABLATION.items() for seed, acc in enumerate(values)]
    path = tmp_path / "all_runs.csv"
    atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False), sealed=True)
    return path


def test_the_ablation_paragraph_gives_each_comparison_its_steins_interval_and_the_stage_verdicts(tmp_path):
    from wscl.study.ablation_summary import ablation_block
    from wscl.study.comparisons import Precision, paired
    study = tmp_path / "ablation.yaml"
    study.write_text("seeds: {pilot: 5, half_width: 2.0, max: 12}\n")
    snapshot = make_snapshot(ablation_runs(tmp_path), study_config=study)
    assert snapshot["comparisons"] == {"precision": {"pilot": 5, "half_width": 2.0, "max": 12}}
    block = ablation_block(snapshot, "ablation.json")
    seeds = dict.fromkeys(range(5))
    nrem = paired({s: ABLATION["full"][s] for s in seeds}, {s: ABLATION["no_nrem"][s] for s in seeds},
                  Precision(5, 2.0, 12))
    assert nrem.answer == "helps" and nrem.target_met
    assert (f"| full vs no_nrem | {nrem.difference:+.1f} [{nrem.low:+.1f}, {nrem.high:+.1f}] | 5 (target met) | helps |"
            in block)
    assert "| full vs no_rem | -0.1 [" in block and "| 5 (target met) | no effect larger than ±" in block
    # base's failed seed 2 leaves full vs base: 4 healthy pilot seeds, and the seeds the pilot planned
    assert "| full vs base | +20.0 [" in block and "| 4 (1 of 5 planned seeds failed) | helps |" in block
    text = " ".join(block.split())
    assert "Of the paper's 2 stage claims tested, 1 holds here (NREM helps); REM no effect larger than" in text
    assert "Failed runs, left out of their comparisons: base seed 2." in text
    assert "**Some CPU (AVX2), " in text and "commit `abc123`" in text and "pilot 5 seeds, target ±2" in text


def test_readme_results_writes_the_ablation_paragraph_and_check_finds_a_hand_edit(tmp_path):
    study = tmp_path / "ablation.yaml"
    study.write_text("seeds: {pilot: 5, half_width: 2.0, max: 12}\n")
    snap = tmp_path / "ablation.json"
    assert main(["snapshot", "--runs", str(ablation_runs(tmp_path)), "--study-config", str(study),
                 "--out", str(snap)]) == 0
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\n<!-- ablation: begin -->\nold\n<!-- ablation: end -->\n")
    assert main(["readme-results", "--snapshot", str(snap), "--readme", str(readme), "--check"]) == 9
    assert main(["readme-results", "--snapshot", str(snap), "--readme", str(readme)]) == 0
    assert "| full vs no_nrem | +10.2 [" in readme.read_text()
    assert main(["readme-results", "--snapshot", str(snap), "--readme", str(readme), "--check"]) == 0
    readme.write_text(readme.read_text().replace("| full vs no_nrem | +10.2", "| full vs no_nrem | +12.0"))
    assert main(["readme-results", "--snapshot", str(snap), "--readme", str(readme), "--check"]) == 9
    study.write_text("seeds: {pilot: 1, half_width: 2.0, max: 12}\n")
    with pytest.raises(RunResultError, match="--study-config"):
        make_snapshot(ablation_runs(tmp_path), study_config=study)


def test_the_readme_matches_its_committed_ablation_snapshot():
    """The README's ablation paragraph is docs/snapshot/ablation.json's (made with `make snapshot-ablation`)."""
    from wscl.study.ablation_summary import ablation_block, readme_with_ablation
    snapshot_path = "docs/snapshot/ablation.json"
    snapshot = json.loads((ROOT / snapshot_path).read_text())
    assert snapshot["comparisons"]["precision"] == {"pilot": 5, "half_width": 2.0, "max": 12}
    readme = (ROOT / "README.md").read_text()
    assert readme_with_ablation(readme, ablation_block(snapshot, snapshot_path), ROOT / "README.md") == readme


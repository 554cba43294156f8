"""Paired comparisons of two presets and seeds chosen by a precision (wscl/study/comparisons.py, pilot.py)."""
import copy
import json
import re

import pytest
import yaml
from workflow_support import REPO, edit_smoke_config, snakemake, workflow_copy

from wscl.settings.config import ConfigError
from wscl.study.comparisons import Precision, paired, parse_seeds, stein_seeds
from wscl.study.pilot import pilot_result, write_pilot
from wscl.study.studies import Study

SMOKE = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
# Per-seed differences a - b = 4, 2, 1 (the pilot of 3 seeds), then 3 for every later seed:
# pilot sd = sqrt(7/3) = 1.5275, t(2, 0.975) = 4.3027, so +-2 points need (4.3027 * 1.5275 / 2)^2 = 10.8 -> 11 seeds.
PILOT_SD = (7 / 3) ** 0.5
A = {seed: 10.0 + d for seed, d in enumerate([4, 2, 1] + [3] * 8)}
B = {seed: 10.0 for seed in range(11)}


def test_a_paired_comparison_is_the_t_interval_of_the_per_seed_differences_over_common_seeds():
    a = {0: 70.0, 1: 72.0, 2: 69.0, 3: 75.0}
    b = {0: 66.0, 1: 70.0, 2: 68.0, 3: 70.0, 4: 99.0}  # seed 4: b only, left out
    # differences 4, 2, 1, 5: mean 3, sd sqrt(10/3), t(3, 0.975) = 3.18245 -> 3 +- 3.18245 * 1.82574 / 2 = 3 +- 2.90516
    found = paired(a, b)
    assert found.seeds == 4 and found.difference == pytest.approx(3.0)
    assert (found.low, found.high) == pytest.approx((0.09484, 5.90516), abs=1e-4)
    assert found.answer == "helps" and found.stopped == "fixed seed count"
    assert paired(b, a).answer == "hurts"
    assert paired({0: 1.0, 1: 3.0, 2: 2.0}, {0: 2.0, 1: 2.0, 2: 2.0}).answer == "undecided at 3 seeds"
    assert paired({0: 1.0}, {0: 2.0, 1: 3.0}).answer == "too few seeds"


def test_steins_total_comes_from_the_pilot_sd_and_stops_at_max():
    assert stein_seeds(PILOT_SD, Precision(pilot=3, half_width=2.0, max=15)) == (11, True)
    assert stein_seeds(PILOT_SD, Precision(pilot=3, half_width=2.0, max=6)) == (6, False)
    assert stein_seeds(0.1, Precision(pilot=3, half_width=2.0, max=15)) == (3, True)  # never fewer than the pilot


def test_steins_interval_keeps_the_pilot_sd_and_degrees_of_freedom():
    met = paired(A, B, Precision(pilot=3, half_width=2.0, max=15))
    # 11 seeds: mean 31/11 = 2.81818, half-width 4.30265 * 1.52753 / sqrt(11) = 1.98166 (<= 2: the target)
    assert met.seeds == 11 and met.difference == pytest.approx(31 / 11)
    assert (met.low, met.high) == pytest.approx((0.83653, 4.79984), abs=1e-4)
    assert met.target_met and met.stopped == "target met" and met.answer == "helps"
    stopped = paired(A, B, Precision(pilot=3, half_width=2.0, max=6))
    # 6 seeds: mean 16/6 = 2.66667, half-width 4.30265 * 1.52753 / sqrt(6) = 2.68321: contains 0
    assert stopped.seeds == 6 and (stopped.low, stopped.high) == pytest.approx((-0.01651, 5.34984), abs=1e-4)
    assert stopped.stopped == "max seeds" and stopped.answer == "undecided at max seeds"
    lost = paired({k: v for k, v in A.items() if k != 4}, B, Precision(pilot=3, half_width=2.0, max=6))
    assert lost.seeds == 5 and lost.stopped == "1 of 6 planned seeds failed"  # not max seeds: a seed failed
    # differences 0.5, -0.5, 0: sd 0.5 -> the pilot suffices; 0 +- 4.30265 * 0.5 / sqrt(3) = +-1.24207
    small = paired({0: 0.5, 1: -0.5, 2: 0.0}, {0: 0.0, 1: 0.0, 2: 0.0}, Precision(3, 2.0, 15))
    assert small.seeds == 3 and small.answer == "no effect larger than ±1.3"


def test_seeds_are_a_list_a_count_or_a_precision():
    assert parse_seeds([4, 2]) == ([4, 2], None)
    assert parse_seeds(3) == ([0, 1, 2], None)
    assert parse_seeds({"pilot": 3, "half_width": 2, "max": 15}) == ([0, 1, 2], Precision(3, 2.0, 15))
    for bad in ({"pilot": 1, "half_width": 2, "max": 15}, {"pilot": 4, "half_width": 2, "max": 3}):
        with pytest.raises(ConfigError, match="pilot"):
            parse_seeds(bad)


def precision_study(tmp_path, presets=("base", "full", "no_nrem")) -> Study:
    config = copy.deepcopy(SMOKE)
    config["results"] = str(tmp_path / "results")
    config["seeds"] = {"pilot": 3, "half_width": 2.0, "max": 15}
    config["grid"] = [{"methods": ["er_ace"], "presets": list(presets)}]
    return Study(config)


def test_the_pilot_fixes_each_groups_seeds_as_the_most_its_comparisons_need(tmp_path):
    study = precision_study(tmp_path)
    seeds = lambda: {g: sorted(k.seed for k in study.runs() if k.group == g) for g in study.groups()}  # noqa: E731
    assert set(map(len, seeds().values())) == {3}  # before the pilot: its seeds only
    group = "synthetic/buffer20/er_ace/{}/reference".format
    assert [(a, b) for _, a, b in study.comparisons()] == [(group("full"), group("base")),
                                                           (group("full"), group("no_nrem"))]
    # full - base differs by 4, 2, 1 over the pilot (sd 1.5275: 11 seeds); full - no_nrem by 0.5, -0.5, 0 (3 seeds)
    accuracy = {"base": [0.0, 0.0, 0.0], "full": [4.0, 2.0, 1.0], "no_nrem": [3.5, 2.5, 1.0]}
    result = pilot_result(study, value_of=lambda run_dir: accuracy[run_dir.split("/")[-3]][int(run_dir[-1])])
    assert result["pilot_sd"][f"{group('full')} - {group('base')}"] == pytest.approx(PILOT_SD)
    (tmp_path / "results/tables").mkdir(parents=True)
    write_pilot(result, study.pilot_file())
    assert seeds() == {group("base"): list(range(11)), group("full"): list(range(11)),
                       group("no_nrem"): [0, 1, 2]}


def test_failed_pilot_seeds_leave_the_estimate_and_too_few_healthy_ones_ask_for_max(tmp_path):
    study = precision_study(tmp_path)
    group = "synthetic/buffer20/er_ace/{}/reference".format
    # base's seed 1 failed: full - base over seeds 0 and 2 only (4 - 0, 1 - 0: sd 2.1213); no_nrem's seeds 0 and
    # 1 failed: one difference left, no estimate
    accuracy = {"base": [0.0, None, 0.0], "full": [4.0, 2.0, 1.0], "no_nrem": [None, None, 1.0]}
    result = pilot_result(study, value_of=lambda run_dir: accuracy[run_dir.split("/")[-3]][int(run_dir[-1])])
    assert result["pilot_sd"][f"{group('full')} - {group('base')}"] == pytest.approx(2.12132, abs=1e-5)
    assert result["pilot_sd"][f"{group('full')} - {group('no_nrem')}"] == float("inf")
    assert stein_seeds(float("inf"), Precision(pilot=3, half_width=2.0, max=15)) == (15, False)


def test_a_failed_pilot_seed_leaves_the_stein_interval_as_it_left_the_plan():
    # seed 1 failed in b: the pilot is seeds 0 and 2 (differences 4 and 1: sd 2.1213), n = max(3, 22) capped at 6
    a = {0: 4.0, 1: 2.0, 2: 1.0, 3: 3.0, 4: 3.0, 5: 3.0}
    b = {0: 0.0, 2: 0.0, 3: 0.0, 4: 0.0, 5: 0.0}
    found = paired(a, b, Precision(pilot=3, half_width=2.0, max=6))
    assert found.seeds == 5 and found.difference == pytest.approx(14 / 5)
    assert found.high - found.difference == pytest.approx(4.30265 * 2.12132 / 5 ** 0.5, abs=1e-4)
    assert paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0}, Precision(3, 2.0, 6)).answer == "too few seeds"


def test_precision_with_a_sweep_is_refused_naming_seeds():
    config = copy.deepcopy(SMOKE)
    config["seeds"] = {"pilot": 3, "half_width": 2.0, "max": 15}
    config["sweep"] = {"settings": {"training.lr": [0.01, 0.05]}}
    with pytest.raises(ConfigError, match="seeds:.*sweep"):
        Study(config)


def planned_train_jobs(work) -> list[tuple[str, int]]:
    out = snakemake(work, "-n")
    text = out.stdout + out.stderr
    jobs = re.findall(r"variant=([^,\s]+), fidelity=\w+, seed=(\d+)", text)
    return sorted({(variant, int(seed)) for variant, seed in jobs}), text


def test_a_tiny_precision_study_pilots_plans_and_trains_only_the_missing_seeds(tmp_path):
    work = workflow_copy(tmp_path / "wf")
    # a target the pilot meets at once: 2 seeds per preset, 4 runs
    edit_smoke_config(work, {"seeds": {"pilot": 2, "half_width": 1000.0, "max": 3}})
    snakemake(work)
    tables = work / "results/tables"
    found = (tables / "synthetic_buffer20_comparisons.csv").read_text()
    assert "full vs base" in found and ",2," in found and "target met" in found
    report = (work / "results/report.html").read_text()
    assert "Comparisons: does each stage help?" in report and "paired over 2 seeds" in report
    assert planned_train_jobs(work)[0] == []
    # a target the pilot's spread cannot meet within max: only seed 2 of each preset trains, the pilot is kept
    # (a target of 1e-6 points: two tiny pilot runs' differences may agree to a rounding error, as seen once)
    edit_smoke_config(work, {"seeds": {"pilot": 2, "half_width": 1.0e-6, "max": 3}})
    jobs, text = planned_train_jobs(work)
    assert jobs == [("base", 2), ("full", 2)] and "rule pilot" not in text
    snakemake(work)
    found = (tables / "synthetic_buffer20_comparisons.csv").read_text()
    assert ",3," in found and "max seeds" in found
    assert json.loads((tables / "pilot.json").read_text())["pilot"] == 2
    assert planned_train_jobs(work)[0] == []
    # a larger max: one more seed of each preset, nothing else trains
    edit_smoke_config(work, {"seeds": {"pilot": 2, "half_width": 1.0e-6, "max": 4}})
    jobs, text = planned_train_jobs(work)
    assert jobs == [("base", 3), ("full", 3)] and "rule pilot" not in text


def test_the_ablation_study_plans_its_pilot_without_data(tmp_path):
    import subprocess

    from workflow_support import BIN, ENV, job_counts
    work = workflow_copy(tmp_path / "ablation")
    done = subprocess.run([str(BIN / "snakemake"), "-n", "--configfile", "config/ablation.yaml"], cwd=work, env=ENV,
                          capture_output=True, text=True, check=True)
    counts = job_counts(done.stdout)
    # 7 presets x 5 pilot seeds, then the pilot's checkpoint; the seeds after it are planned once it ran
    assert counts["train"] == 7 * 5 and counts["pilot"] == 1 and counts["prepare_dataset"] == 1
    assert "checkpoint jobs" in done.stdout


def test_the_study_schema_takes_seeds_as_a_list_a_count_or_a_precision(tmp_path):
    from snakemake.utils import validate

    from wscl.settings.schema import write_schemas
    path = write_schemas(REPO / "rules/config.schema.yaml", tmp_path)
    validate(yaml.safe_load((REPO / "config/ablation.yaml").read_text()), path)
    for seeds in ([0, 1, 2], 3, {"pilot": 3, "half_width": 2.0, "max": 15}):
        validate(copy.deepcopy(SMOKE) | {"seeds": seeds}, path)
    for seeds in ({"pilot": 3, "max": 15}, {"pilot": 3, "half_width": 0, "max": 15}, 0, [1, 1],
                  {"pilot": 3, "half_width": 2.0, "max": 15, "min": 2}):
        with pytest.raises(Exception, match="Error validating config file"):
            validate(copy.deepcopy(SMOKE) | {"seeds": seeds}, path)

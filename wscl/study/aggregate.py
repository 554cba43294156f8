"""Tables and plots over all runs of a study (mean ± std over seeds)."""
from __future__ import annotations

import sys
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from wscl.core.provenance import dataset_identity
from wscl.core.safe_io import atomic_write_text, translated
from wscl.method.dynamics import LOSS_PHASES, loss_curve
from wscl.method.metrics import SUMMARY_KEYS, read_metrics
from wscl.study.comparisons import Precision, comparison_pairs, paired
from wscl.study.outputs import (
    ALL_RUNS,
    COMPARISONS,
    PLOTS,
    comparisons_table_file,
    plot_file,
    selection_table_file,
    sensitivity_plot,
    table_name,
)
from wscl.study.reproduction import verdict
from wscl.study.run_failures import failed_seeds_text, failure_of
from wscl.study.selection import CRITERION, read_selection, tuning_figures
from wscl.study.studies import FIXED_BUFFER, Study
from wscl.study.sweeps import TUNED, variant
from wscl.tracking.rows import run_key

SETTINGS = ("class_il", "task_il")
SUMMARY = SUMMARY_KEYS
LABELS = {"final_avg_acc": "acc", "forgetting": "forgetting", "forgetting_incl_pretraining": "forgetting [code]",
          "forgetting_trained_only": "forgetting [ours]", "bwt": "BWT", "fwt": "FWT"}
SHOWN = ("final_avg_acc", "forgetting", "bwt", "fwt")  # the columns of the readable tables
TUNE_COLUMNS = ("final_avg_acc", "forgetting")  # per setting, of the tuning split, in the runs table only
# Paper cells and the metric of ours each is compared with: forgetting with the paper's own definition.
PAPER_CELLS = {"final_avg_acc": "final_avg_acc", "forgetting": "forgetting_incl_pretraining"}


def reported_values() -> dict:
    return yaml.safe_load(resources.files("wscl.study").joinpath("resources/paper_reported.yaml").read_text())


def load_runs(study: Study) -> pd.DataFrame:
    rows = []
    for key in study.runs():
        path = Path(study.run_dir(key)) / "metrics.json"
        m, _ = read_metrics(path)
        dataset = dataset_identity(m)
        wall = m.get("wall_seconds", {})
        row = {"benchmark": key.benchmark, "buffer": key.buffer, "method": key.method, "preset": key.preset,
               "point": key.point, "swept_group": replace(key, point="").group,
               "seed": key.seed, "fidelity": key.fidelity, "group": key.group, "device": m["device"],
               "device_name": m.get("device_name"), "path": str(path), "run_key": run_key(path.parent),
               "git_commit": m.get("git_commit"), "torch_version": m.get("torch_version"),
               "wscl_version": m.get("wscl_version"), "dataset": dataset["name"],
               "dataset_sha256": dataset["digest"], "dataset_source": dataset["source"],
               "dataset_checksums_verified": dataset["verified"], "dataset_generated": dataset["generated"],
               "dataset_identity": dataset,  # for the MLflow parents: each metrics.json is parsed once
               "wall_seconds": float(wall.get("total", sum(wall.values()))) if wall else float("nan"),
               "final_frozen_blocks": (m["frozen_blocks_per_task"] or [0])[-1],  # a failed run: [] (0)
               "frozen_blocks": m["frozen_blocks_per_task"],
               "matrix_class_il": m.get("class_il", {}).get("accuracy_matrix", []),
               "matrix_task_il": m.get("task_il", {}).get("accuracy_matrix", []),
               "train_images_per_second": m.get("train_images_per_second"),
               # exploded losses and collapses the run reported (docs/method.md, Training failures)
               "training_failures": len(m.get("training_failures", [])),
               "failure": failure_of(m),  # "" for a healthy run (study/run_failures.py)
               # mean loss per epoch and phase (wscl/method/dynamics.py), for the loss-curve figure
               "loss_curves": {phase: loss_curve(m.get("tasks", []), phase) for phase in LOSS_PHASES}}
        for setting in SETTINGS:
            for metric in SUMMARY:  # a run that stopped in training has no figures
                row[f"{setting}_{metric}"] = m.get(setting, {}).get(metric, float("nan"))
        tune = tuning_figures(m)  # the tuning split's figures [ours]; NaN for a run without one
        for setting in SETTINGS:
            for metric in TUNE_COLUMNS:
                row[f"tune_{setting}_{metric}"] = tune.get(f"{setting}_{metric}", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def runs_for_table(runs: pd.DataFrame, benchmark: str, buffer: int) -> pd.DataFrame:
    """Runs at this buffer, plus the buffer-free presets of the benchmark."""
    sel = (runs.benchmark == benchmark) & ((runs.buffer == buffer) | runs.preset.isin(list(FIXED_BUFFER)))
    return runs[sel]


def paper_cells(reported: dict, name: str, buffer: int, method: str, preset: str) -> dict[str, tuple]:
    """The paper's reported Class-IL values for a table row: metric -> (mean, sd or None).

    ER-ACE + WSCL's values belong to both WSCLs: `authors` (the code that produced them) and `full`
    (the method the paper describes); each row says which preset it is."""
    if method == reported["method"] and preset in reported["presets"]:
        cell = reported["values"].get(name, {}).get(buffer, {})
        return {m: (cell[m], cell.get(f"{m}_std")) for m in PAPER_CELLS if m in cell}
    if preset == "wake_rem" and name in reported["wake_rem"]:
        return {"final_avg_acc": (reported["wake_rem"][name], None)}
    return {}


def counted(group: pd.DataFrame, include_failed: bool) -> tuple[pd.DataFrame, list[int]]:
    """The seeds a row averages (failed ones only with the study's ``include_failed_runs``) and the failed seeds."""
    failed = group.failure.fillna("") != "" if "failure" in group else pd.Series(False, index=group.index)
    return (group if include_failed else group[~failed]), sorted(int(s) for s in group.seed[failed])


def summary_table(runs: pd.DataFrame, benchmark: str, buffer: int, reported_as: str | None,
                  include_failed: bool = False) -> pd.DataFrame:
    reported = reported_values()
    rows = []
    for (method, preset, fidelity, buf), every in runs.groupby(["method", "preset", "fidelity", "buffer"],
                                                               sort=False):
        group, failed = counted(every, include_failed)
        row = {"method": method, "preset": preset, "buffer": buf, "fidelity": fidelity, "seeds": len(group),
               "failed": len(failed), "failed_seeds": failed, "failed_included": include_failed,
               # the sweep point the row reports (selected on the tuning split), `tuned`, or "" outside sweeps
               "point": every.point.iloc[0] if "point" in every else ""}
        for setting in SETTINGS:
            for metric in SUMMARY:
                values = group[f"{setting}_{metric}"].astype(float)
                row[f"{setting}_{metric}_mean"] = values.mean()
                row[f"{setting}_{metric}_std"] = values.std(ddof=1) if len(values) > 1 else 0.0
        cells = paper_cells(reported, reported_as or benchmark, buffer, method, preset)
        for paper_metric, ours_metric in PAPER_CELLS.items():
            mean, sd = cells.get(paper_metric, (None, None))
            row[f"paper_class_il_{paper_metric}"] = mean
            if mean is None:
                row[f"verdict_class_il_{paper_metric}"] = ""
                continue
            v = verdict(group[f"class_il_{ours_metric}"].astype(float).tolist(), mean, sd)
            row[f"verdict_class_il_{paper_metric}"] = v.verdict
            row[f"diff_class_il_{paper_metric}"] = v.difference
            row[f"diff_class_il_{paper_metric}_low"] = v.low
            row[f"diff_class_il_{paper_metric}_high"] = v.high
        rows.append(row)
    return pd.DataFrame(rows)


def pretty(table: pd.DataFrame) -> pd.DataFrame:
    shown = ["method", "preset", "point", "buffer", "fidelity", "seeds"]
    out = table[[c for c in shown if c != "point" or table.get("point", pd.Series([""])).fillna("").any()]].copy()
    for setting, tag in (("class_il", "Class-IL"), ("task_il", "Task-IL")):
        for metric in SHOWN:
            mean, std = table[f"{setting}_{metric}_mean"], table[f"{setting}_{metric}_std"]
            out[f"{tag} {LABELS[metric]}"] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(mean, std)]
    if "failed_seeds" in table:  # failed seeds: left out of the means and verdicts unless the study includes them
        out.insert(out.columns.get_loc("seeds") + 1, "failed",
                   [failed_seeds_text(seeds) + (" included" if inc and seeds else "")
                    for seeds, inc in zip(table.failed_seeds, table.failed_included)])
    for metric, label in (("final_avg_acc", "acc"), ("forgetting", "forgetting")):
        paper = table.get(f"paper_class_il_{metric}", pd.Series([None] * len(table)))
        out[f"paper Class-IL {label} (reported)"] = ["" if v is None or pd.isna(v) else f"{v:.2f}" for v in paper]
        out[f"verdict {label}"] = [_verdict_text(table, i, metric) for i in range(len(table))]
    return out


def _verdict_text(table: pd.DataFrame, i: int, metric: str) -> str:
    word = table.get(f"verdict_class_il_{metric}")
    if word is None or pd.isna(word.iloc[i]) or not word.iloc[i]:
        return ""
    low, high = table.get(f"diff_class_il_{metric}_low"), table.get(f"diff_class_il_{metric}_high")
    if low is None or pd.isna(low.iloc[i]):
        return str(word.iloc[i])
    diff = table[f"diff_class_il_{metric}"].iloc[i]
    return f"{word.iloc[i]} ({diff:+.2f} [{low.iloc[i]:+.2f}, {high.iloc[i]:+.2f}])"


def write_tables(table: pd.DataFrame, stem: Path, caption: str) -> None:
    # sealed: the report and the archive read them back (safe_io.read_verified)
    atomic_write_text(stem.with_suffix(".csv"), table.to_csv(index=False, float_format="%.4f"), sealed=True)
    nice = pretty(table)
    atomic_write_text(stem.with_suffix(".md"), f"**{caption}**\n\n" + nice.to_markdown(index=False) + "\n",
                      sealed=True)
    latex = nice.copy()
    latex.columns = [c.replace("_", r"\_") for c in latex.columns]
    latex["preset"] = latex["preset"].str.replace("_", r"\_")
    latex["method"] = latex["method"].str.replace("_", r"\_")
    atomic_write_text(stem.with_suffix(".tex"), latex.to_latex(index=False, caption=caption, escape=False)
                      .replace("±", r"$\pm$"), sealed=True)


def _draw_plots(subset: pd.DataFrame, table: pd.DataFrame, benchmark: str, buffer: int, plots_dir: Path,
                title: str) -> None:
    """Every figure of outputs.PLOTS for one table: per-run figures read the runs, the others the table."""
    from wscl.study import plots
    makers = {"accuracy_matrix": (plots.mean_accuracy_matrices, subset),
              "avg_acc_curve": (plots.average_accuracy_curves, subset),
              "ablation": (plots.ablation_bars, table),
              "frozen_blocks": (plots.frozen_blocks, subset),
              "task_accuracy": (plots.task_accuracy_over_time, subset),
              "forgetting_vs_accuracy": (plots.forgetting_vs_accuracy, table),
              "loss_curve": (plots.loss_curves, subset)}
    for plot in PLOTS:
        draw, data = makers[plot]
        draw(data, str(plots_dir / plot_file(benchmark, buffer, plot)), title)


def reported_runs(runs: pd.DataFrame, selection: dict | None) -> list[bool]:
    """The runs the tables report: those outside sweeps, those at a tuned point, and each swept group's runs at
    its selected point (chosen on the tuning split: study/selection.py)."""
    chosen = {group: entry["selected"] for group, entry in (selection or {"groups": {}})["groups"].items()}
    return [point in ("", TUNED) or chosen.get(group) == point for point, group in zip(runs.point, runs.swept_group)]


def selection_table(runs: pd.DataFrame, selection: dict, study: Study) -> pd.DataFrame:
    """One row per sweep point of a table: its settings, tuning and test Class-IL accuracy (mean, std over seeds)
    and whether it was selected."""
    rows = []
    for (method, preset, fidelity, point, group), seeds in runs[~runs.point.isin(["", TUNED])].groupby(
            ["method", "preset", "fidelity", "point", "swept_group"], sort=False):
        row = {"method": method, "preset": preset, "fidelity": fidelity, "point": point, "seeds": len(seeds),
               **study.point_settings(point)}
        chosen = selection["groups"][group]
        seen = chosen["points"][point]  # what the choice saw: the tuning figures, as selection.json records them
        row["tune_mean"], row["tune_std"] = (seen.get("tune_class_il_final_avg_acc_mean", float("nan")),
                                             seen.get("tune_class_il_final_avg_acc_std", float("nan")))
        row["skipped"] = seen.get("skipped", "")  # a point with a failed seed: why selection skipped it
        test = seeds["class_il_final_avg_acc"].astype(float)
        row["test_mean"], row["test_std"] = test.mean(), test.std(ddof=1) if len(test) > 1 else 0.0
        row["selected"] = chosen["selected"] == point
        rows.append(row)
    return pd.DataFrame(rows)


def pretty_selection(points: pd.DataFrame) -> pd.DataFrame:
    """The selection table as shown: tuning and test accuracy as mean ± std, the selected point ticked."""
    nice = points.drop(columns=["tune_mean", "tune_std", "test_mean", "test_std"]).copy()
    nice["tuning Class-IL acc"] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(points.tune_mean, points.tune_std)]
    nice["test Class-IL acc"] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(points.test_mean, points.test_std)]
    nice["selected"] = ["✓" if chosen else "" for chosen in points.selected]
    if "skipped" in points:
        nice["skipped"] = points.skipped.fillna("").astype(str)
    return nice


def write_selection_tables(points: pd.DataFrame, tables_dir: Path, benchmark: str, buffer: int) -> None:
    atomic_write_text(tables_dir / selection_table_file(benchmark, buffer, "csv"),
                      points.to_csv(index=False, float_format="%.4f"), sealed=True)
    nice = pretty_selection(points)
    caption = (f"{benchmark}, buffer {buffer}: every sweep point, chosen on the tuning split ({CRITERION}); "
               "test figures shown for the record")
    atomic_write_text(tables_dir / selection_table_file(benchmark, buffer, "md"),
                      f"**{caption}**\n\n" + nice.to_markdown(index=False) + "\n", sealed=True)


def table_comparisons(runs: pd.DataFrame, precision: Precision | None = None) -> pd.DataFrame:
    """Every paired comparison a - b of a table's runs (study/comparisons.py): two presets of one method and
    fidelity (the reported point of each), on the Class-IL final accuracy of the seeds both have."""
    values = {key: dict(zip(group.seed.astype(int), group.class_il_final_avg_acc.astype(float)))
              for key, group in runs.groupby(["method", "fidelity", "preset"], sort=False)}
    rows = []
    for method, fidelity in dict.fromkeys(zip(runs.method, runs.fidelity)):
        for title, a, b in comparison_pairs():
            if (method, fidelity, a) in values and (method, fidelity, b) in values:
                found = paired(values[method, fidelity, a], values[method, fidelity, b], precision)
                rows.append({"comparison": title, "method": method, "fidelity": fidelity, "a": a, "b": b,
                             **found.as_dict(), "stopped": found.stopped})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


COMPARISON_COLUMNS = ["comparison", "method", "fidelity", "a", "b", "a_mean", "b_mean", "seeds", "difference", "low",
                      "high", "target", "target_met", "stopped", "answer", "rule"]


def pretty_comparisons(found: pd.DataFrame) -> pd.DataFrame:
    """The comparisons as shown: the difference with its interval, the seeds, why they stopped, the answer."""
    return pd.DataFrame({
        "comparison": found.comparison, "method": found.method, "fidelity": found.fidelity, "seeds": found.seeds,
        "a − b (Class-IL acc)": [f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]" if lo == lo else f"{d:+.2f} (no interval)"
                                 for d, lo, hi in zip(found.difference, found.low, found.high)],
        "stopped by": found.stopped, "answer": found.answer})


def write_comparisons(found: pd.DataFrame, tables_dir: Path, benchmark: str, buffer: int, rule: str) -> None:
    atomic_write_text(tables_dir / comparisons_table_file(benchmark, buffer, "csv"),
                      found.to_csv(index=False, float_format="%.4f"), sealed=True)
    caption = (f"{benchmark}, buffer {buffer}: paired comparisons a − b of Class-IL final average accuracy over the "
               f"seeds both presets have, 95% interval ({rule}; wscl/study/comparisons.py)")
    atomic_write_text(tables_dir / comparisons_table_file(benchmark, buffer, "md"),
                      f"**{caption}**\n\n" + pretty_comparisons(found).to_markdown(index=False) + "\n", sealed=True)


def comparison_rows(found: pd.DataFrame) -> dict[str, list[dict]]:
    """Each comparison under the parent-row key (method, preset a, fidelity) it belongs to, for the MLflow parents."""
    out: dict[str, list[dict]] = {}
    for row in found.to_dict("records"):
        out.setdefault(f"{row['method']}/{row['a']}/{row['fidelity']}", []).append(row)
    return out


def aggregate(study: Study, tables_dir: Path, plots_dir: Path, mlflow_uri: str | None = None) -> None:
    """Tables and plots; with an MLflow URI also each run's MLflow run id (all_runs.csv) and the seed
    statistics and verdicts on every parent run. Logging runs to MLflow is not its job: the workflow's
    `mlflow_sync` rule (`wscl mlflow-sync`) logs every finished run the store lacks before this runs."""
    for folder in (tables_dir, plots_dir):
        with translated(folder):  # a read-only results folder: one line, not a traceback
            folder.mkdir(parents=True, exist_ok=True)
    runs = load_runs(study)
    selection = read_selection(study.selection_file()) if study.sweeps else None
    runs["in_table"] = reported_runs(runs, selection)
    run_ids = {}
    if mlflow_uri:
        from wscl.tracking.runs import child_run_ids
        try:
            run_ids = child_run_ids(mlflow_uri, study.config["study"])
        except Exception as exc:  # the tables do not depend on the tracking store being reachable
            print(f"MLflow at {mlflow_uri} not readable ({exc}); all_runs.csv gets no run ids", file=sys.stderr)
            mlflow_uri = None
    runs["mlflow_run_id"] = [run_ids.get(k, "") for k in runs.run_key]
    flat = runs.drop(columns=["matrix_class_il", "matrix_task_il", "frozen_blocks", "loss_curves", "dataset_identity"])
    atomic_write_text(tables_dir / ALL_RUNS, flat.to_csv(index=False, float_format="%.4f"), sealed=True)
    reported = reported_values()
    parent_rows = {}
    for benchmark, buffer in study.tables():
        swept = runs_for_table(runs, benchmark, buffer)
        subset = swept[swept.in_table]
        reported_as = study.config["benchmarks"][benchmark].get("reported_as")
        table = summary_table(subset, benchmark, buffer, reported_as, study.config.get("include_failed_runs", False))
        fidelity = "/".join(sorted(set(subset.fidelity)))
        caption = (f"{benchmark}, buffer {buffer} (buffer-free presets at 0): mean ± std over seeds; "
                   f"fidelity per row; forgetting per the row's fidelity (reference: [code] definition incl. "
                   f"pre-training entries; corrected: [ours]); paper values: {reported['source']}; verdict: "
                   "ours - paper with its 95% interval (wscl/study/reproduction.py)")
        write_tables(table, tables_dir / table_name(benchmark, buffer), caption)
        # a failed seed leaves every comparison it is part of, unless the study counts failed runs
        compared, _ = counted(subset, study.config.get("include_failed_runs", False))
        found = table_comparisons(compared, study.precision)
        write_comparisons(found, tables_dir, benchmark, buffer, study.describe_comparisons())
        versus = comparison_rows(found)
        for row in table.to_dict("records"):
            name = variant(row["preset"], "" if pd.isna(row["point"]) else row["point"])
            row["comparisons"] = versus.get(f"{row['method']}/{row['preset']}/{row['fidelity']}", [])
            parent_rows.setdefault(f"{benchmark}/buffer{row['buffer']}/{row['method']}/{name}/{row['fidelity']}", row)
        plotted = subset[subset.failure == ""]  # a failed run has no curves to draw
        _draw_plots(plotted, table, benchmark, buffer, plots_dir, f"{benchmark}, buffer {buffer} ({fidelity})")
        from wscl.study import plots
        plots.comparison_intervals(found, str(plots_dir / plot_file(benchmark, buffer, COMPARISONS)),
                                   f"{benchmark}, buffer {buffer}", study.precision)
        keys = study.swept_keys(benchmark, buffer)
        if keys:
            points = selection_table(swept, selection, study)
            write_selection_tables(points, tables_dir, benchmark, buffer)
            from wscl.study import plots
            for key in keys:
                plots.sensitivity(points, key, str(plots_dir / plot_file(benchmark, buffer, sensitivity_plot(key))),
                                  f"{benchmark}, buffer {buffer}")
    if mlflow_uri:
        from wscl.tracking.parents import summarize_parents
        datasets = runs.groupby("group").dataset_identity.first().to_dict()
        summarize_parents(mlflow_uri, study.config["study"], parent_rows, datasets)

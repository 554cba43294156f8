"""A one-page, self-contained HTML report of a study: a summary computed from the results, the tables, the
figures (embedded, each with a caption), one row per run, and where everything came from.

Every number of the summary is marked with the table cell it comes from (``data-table``, ``data-row``,
``data-col``), so that it can be checked against the tables in the page itself.
"""
from __future__ import annotations

import base64
import functools
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from wscl.core.errors import ConfigError
from wscl.core.provenance import git_state, software_versions
from wscl.core.safe_io import atomic_write_text, read_result
from wscl.settings.config import presets_of
from wscl.study.aggregate import (
    pretty,
    pretty_comparisons,
    pretty_selection,
    reported_values,
    runs_for_table,
    table_comparisons,
)
from wscl.study.comparisons import Precision
from wscl.study.outputs import (
    ALL_RUNS,
    CAPTIONED,
    COMPARISONS,
    PLOTS,
    comparisons_table_file,
    plot_file,
    selection_table_file,
    sensitivity_plot,
    table_file,
    table_name,
)
from wscl.study.studies import Study
from wscl.tracking.parents import SETUP_AGAIN

ACC = "Class-IL acc"                    # the column of pretty() the summary reads
# Each figure's caption: report/<plot>.rst, the files Snakemake's report shows with the figures. Read from the
# checkout the package runs from (an editable install, or PYTHONPATH), else from the working directory: the
# report rule runs in the repository root, also with a package installed into a conda environment.
CAPTION_DIRS = (Path(__file__).resolve().parents[2] / "report", Path("report"))


def read_captions(folder: str | Path | None = None) -> dict[str, str]:
    """``{name: caption}`` for every figure kind and table of ``outputs.CAPTIONED``, from ``folder``/<name>.rst
    (default: the first of CAPTION_DIRS that has them all); lines joined into one."""
    folders = [Path(folder)] if folder is not None else list(CAPTION_DIRS)
    for where in folders:
        if all((where / f"{name}.rst").is_file() for name in CAPTIONED):
            return {name: " ".join((where / f"{name}.rst").read_text().split()) for name in CAPTIONED}
    raise ConfigError("the figures' captions (report/<plot>.rst) were not found in "
                      f"{' or '.join(str(f.resolve()) for f in folders)}; run the report from the repository root")


@functools.lru_cache(maxsize=1)
def _captions() -> dict[str, str]:
    return read_captions()


def __getattr__(name: str):
    if name == "CAPTIONS":  # read on first use, so that importing this module reads no file
        return _captions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


STYLE = """body{font-family:system-ui,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3}img{max-width:100%}figure{display:inline-block;vertical-align:top;margin:.5em;max-width:48%}
figcaption{font-size:12px;color:#444}.note{color:#555;font-size:13px}.summary li{margin:.25em 0}
.summary{background:#f6f8fa;border:1px solid #dde;padding:.5em 1.2em;border-radius:6px}
code,pre{font-size:12px}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}.num,.diff{font-weight:600}"""


def row_id(method: str, preset: str, fidelity: str, buffer) -> str:
    return f"{method}/{preset}/{fidelity}/buffer{int(buffer)}"


@dataclass
class Finding:
    kind: str               # best | vs_base | ablation | verdict | none
    html: str
    refs: list[dict] = field(default_factory=list)


def _num(value: float, table: str, row: str, col: str = ACC) -> str:
    return (f'<span class="num" data-table="{html.escape(table)}" data-row="{html.escape(row)}" '
            f'data-col="{html.escape(col)}">{value:.2f}</span>')


def _diff_html(c, table: str, row_a: str, row_b: str) -> str:
    """A paired comparison (a row of aggregate.table_comparisons): a − b, its interval, seeds, why it stopped."""
    interval = "no interval" if math.isnan(c.low) else f"95% interval [{c.low:+.2f}, {c.high:+.2f}]"
    return (f'<span class="diff" data-table="{html.escape(table)}" data-row-a="{html.escape(row_a)}" '
            f'data-row-b="{html.escape(row_b)}" data-col="{ACC}">{c.difference:+.2f}</span> points '
            f"({interval}, paired over {c.seeds} seeds, {html.escape(c.stopped)}: <b>{html.escape(c.answer)}</b>)")


def findings(runs: pd.DataFrame, table: pd.DataFrame, benchmark: str, buffer: int,
             precision: Precision | None = None) -> list[Finding]:
    """What the study found at one benchmark and buffer, per fidelity, from its table and per-seed runs:
    the best preset, each WSCL (role `wscl` of config.PRESET_SPECS: authors, full) vs its base learner, full vs
    the other WSCL, each ablation's effect (full - ablation, role `ablation`), and the reproduction verdicts of the
    paper's cells. Differences are paired over the seeds both presets have (aggregate.table_comparisons, with
    the study's precision when it asks for one); verdicts are the tables' own."""
    tid = table_name(benchmark, buffer)
    out: list[Finding] = []
    rows = {(r.method, r.preset, r.fidelity): r for r in table.itertuples()}
    found = table_comparisons(runs, precision)

    def rid(r) -> str:
        return row_id(r.method, r.preset, r.fidelity, r.buffer)

    for fidelity in sorted(set(table.fidelity)):
        at = table[table.fidelity == fidelity]
        best = at.loc[at.class_il_final_avg_acc_mean.idxmax()]
        out.append(Finding("best", f"<b>Best ({fidelity})</b>: {html.escape(best.method)}/"
                                   f"<b>{html.escape(best.preset)}</b> with Class-IL final accuracy "
                                   f"{_num(best.class_il_final_avg_acc_mean, tid, rid(best))}%"
                                   f" (mean of {int(best.seeds)} seeds).",
                           [{"table": tid, "row": rid(best)}]))
        for c in found[found.fidelity == fidelity].itertuples():
            row_a, row_b = rows.get((c.method, c.a, fidelity)), rows.get((c.method, c.b, fidelity))
            if row_a is None or row_b is None:
                continue
            kind = "vs_base" if c.b == "base" else "vs_wscl" if c.b in presets_of("wscl") else "ablation"
            note = " (positive: the component helps)" if kind == "ablation" else ""
            out.append(Finding(kind, f"<b>{html.escape(c.comparison)} ({fidelity})</b>: {html.escape(c.method)}/{c.a} "
                                     f"{_num(row_a.class_il_final_avg_acc_mean, tid, rid(row_a))} − {c.b} "
                                     f"{_num(row_b.class_il_final_avg_acc_mean, tid, rid(row_b))} = "
                                     + _diff_html(c, tid, rid(row_a), rid(row_b)) + f"{note}.",
                               [{"table": tid, "row": rid(row_a)}, {"table": tid, "row": rid(row_b)}]))
    nice = pretty(table)
    for i, r in enumerate(table.itertuples()):
        for label in ("acc", "forgetting"):
            text = nice[f"verdict {label}"].iloc[i]
            if text:
                col = f"verdict {label}"
                out.append(Finding("verdict", f"<b>Paper ({r.fidelity})</b>: {html.escape(r.method)}/{r.preset} "
                                              f"Class-IL {label}: <span class=\"verdict\" data-table=\"{tid}\" "
                                              f"data-row=\"{rid(r)}\" data-col=\"{col}\">{html.escape(text)}</span>.",
                                   [{"table": tid, "row": rid(r)}]))
    if not any(f.kind == "verdict" for f in out):
        out.append(Finding("none", "The paper reports no value for these rows: no reproduction verdict."))
    return out


def _table_html(nice: pd.DataFrame, ids: list[str], tid: str, links: dict | None = None,
                link_col: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in nice.columns)
    body = []
    for rid, (_, row) in zip(ids, nice.iterrows()):
        cells = []
        for c, v in row.items():
            text = html.escape("" if pd.isna(v) else str(v))
            if links and c == link_col and rid in links:
                text = f'<a href="{html.escape(links[rid])}">{text}</a>'
            cells.append(f'<td data-col="{html.escape(str(c))}">{text}</td>')
        cells = "".join(cells)
        body.append(f'<tr data-row="{html.escape(rid)}">{cells}</tr>')
    return f'<table id="table-{html.escape(tid)}" class="results"><tr>{head}</tr>{"".join(body)}</table>'


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(read_result(path, AGGREGATE_AGAIN)).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}"><figcaption>'
            f"<b>{html.escape(path.stem)}</b>: {html.escape(caption)}</figcaption></figure>")


AGGREGATE_AGAIN = "delete it and rerun the workflow (the aggregate rule writes it again)"
LOCAL_UI = "http://127.0.0.1:5000"  # `make mlflow-ui`
# MLflow 3's UI opens experiments in its GenAI view unless asked for the model-training one.
UI_VIEW = "workflowType=machine_learning"


def mlflow_ui(study: Study) -> tuple[str, str | None]:
    """The MLflow UI that shows the study's store, and the experiment id (from the mlflow_setup rule's
    setup.json; None before it ran)."""
    uri = study.tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI
    setup = Path(study.results) / "mlflow/setup.json"
    experiment_id = None
    if setup.is_file():
        experiment_id = json.loads(read_result(setup, SETUP_AGAIN)).get("experiment_id")
    return base, experiment_id


def _runs_table(runs: pd.DataFrame, ui: tuple[str, str | None] = (LOCAL_UI, None)) -> str:
    cols = {"benchmark": "benchmark", "buffer": "buffer", "method": "method", "preset": "preset",
            "fidelity": "fidelity", "seed": "seed", "class_il_final_avg_acc": "Class-IL acc",
            "task_il_final_avg_acc": "Task-IL acc", "class_il_forgetting": "Class-IL forgetting",
            "final_frozen_blocks": "frozen blocks (last task)", "wall_seconds": "wall time (s)",
            "failure": "failed", "mlflow_run_id": "MLflow run id"}
    shown = runs[[c for c in cols if c in runs.columns]].rename(columns=cols).copy()
    for c in ("Class-IL acc", "Task-IL acc", "Class-IL forgetting", "wall time (s)"):
        if c in shown:
            shown[c] = [f"{v:.2f}" if v == v else "" for v in shown[c].astype(float)]
    for c in ("MLflow run id", "failed"):
        if c in shown:
            shown[c] = shown[c].fillna("").astype(str)
    ids = [f"{r.benchmark}/{row_id(r.method, r.preset, r.fidelity, r.buffer)}/seed{r.seed}" for r in runs.itertuples()]
    base, experiment_id = ui
    links = None
    if experiment_id is not None and "MLflow run id" in shown:
        links = {i: f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{UI_VIEW}"
                 for i, run_id in zip(ids, shown["MLflow run id"]) if run_id}
    return _table_html(shown, ids, "runs", links=links, link_col="MLflow run id")


def _failed_seeds(runs: pd.DataFrame, include: bool) -> tuple[pd.DataFrame, str]:
    """The runs the summary counts (failed seeds only with ``include_failed_runs``) and a summary line naming the
    failed ones (study/run_failures.py), or "" when none failed."""
    failure = runs.failure.fillna("").astype(str) if "failure" in runs else pd.Series("", index=runs.index)
    failed = runs[failure != ""]
    if failed.empty:
        return runs, ""
    names = "; ".join(f"{r.method}/{r.preset}/{r.fidelity} seed {r.seed}: {failure[i]}"
                      for i, r in zip(failed.index, failed.itertuples()))
    how = "counted in the means and verdicts (include_failed_runs)" if include else "left out of the means and verdicts"
    line = f'<li class="finding failed"><b>{len(failed)} failed run(s)</b>, {how}: {html.escape(names)}</li>'
    return (runs if include else runs[failure == ""]), line


def _provenance(study: Study, runs: pd.DataFrame) -> str:
    git = git_state()
    versions = software_versions()
    commits = sorted(set(runs.git_commit.dropna().astype(str))) if "git_commit" in runs else []
    dirty = {True: "dirty (uncommitted changes)", False: "clean", None: "unknown"}[git["dirty"]]
    items = [
        f"<li>Runs trained at git commit(s): <code>{html.escape(', '.join(commits) or 'unknown')}</code>; "
        f"report built at <code>{html.escape(git['commit'])}</code>, working tree <b>{dirty}</b>.</li>",
        "<li>Versions: " + ", ".join(f"{k} <code>{html.escape(str(v))}</code>" for k, v in versions.items()
                                    if k in ("python", "wscl", "torch", "cuda", "snakemake", "mlflow")) +
        f"; torch in the runs: <code>{html.escape(', '.join(sorted(set(runs.torch_version.dropna().astype(str)))))}"
        "</code>.</li>",
        "<li>Devices: " + ", ".join(f"<code>{html.escape(str(d))}</code> ({html.escape(str(n))})" for d, n in
                                   sorted(set(zip(runs.device.astype(str), runs.device_name.fillna("").astype(str)))))
        + f"; platform <code>{html.escape(versions['platform'])}</code>.</li>",
    ]
    data_rows = []
    for (name, sha, verified, generated, source), _ in runs.groupby(
            ["dataset", "dataset_sha256", "dataset_checksums_verified", "dataset_generated", "dataset_source"],
            dropna=False):
        checked = "none: generated" if str(generated) == "True" else "yes" if str(verified) == "True" else "no"
        data_rows.append(f"<tr><td>{html.escape(str(name))}</td><td><code>{html.escape(str(sha))}</code></td>"
                         f"<td>{checked}</td>"
                         f"<td>{html.escape(str(source))}</td></tr>")
    datasets = ('<table id="datasets"><tr><th>dataset</th><th>content sha256</th><th>raw checksums verified</th>'
                f"<th>source</th></tr>{''.join(data_rows)}</table>")
    config = html.escape(yaml.safe_dump(study.config, sort_keys=False))
    return (f"<ul>{''.join(items)}</ul>{datasets}<details><summary>Study configuration</summary>"
            f"<pre>{config}</pre></details>")


def _selection_html(tables_dir: Path, benchmark: str, buffer: int) -> str:
    """A sweep's points with their tuning and test accuracy, the selected one marked; the rows above report it."""
    points = pd.read_csv(io.BytesIO(read_result(tables_dir / selection_table_file(benchmark, buffer, "csv"),
                                                AGGREGATE_AGAIN)))
    shown = pretty_selection(points)
    tid = f"{table_name(benchmark, buffer)}_selection"
    ids = [f"{r.method}/{r.preset}/{r.fidelity}/{r.point}" for r in points.itertuples()]
    return (f"<h3 id='{html.escape(tid)}'>Sweep: the points and the one selected</h3>"
            f"<p class='note'>{html.escape(_captions()['selection'])} The table above reports the selected "
            "point of each swept row.</p>" + _table_html(shown, ids, tid))


def _comparisons_html(tables_dir: Path, plots_dir: Path, benchmark: str, buffer: int) -> str:
    """Every paired comparison of a table, with the answer each gives, and its figure of intervals against 0."""
    found = pd.read_csv(io.BytesIO(read_result(tables_dir / comparisons_table_file(benchmark, buffer, "csv"),
                                               AGGREGATE_AGAIN)))
    tid = f"{table_name(benchmark, buffer)}_{COMPARISONS}"
    ids = [f"{r.method}/{r.a}-{r.b}/{r.fidelity}" for r in found.itertuples()]
    return (f"<h3 id='{html.escape(tid)}'>Comparisons: does each stage help?</h3>"
            + _table_html(pretty_comparisons(found), ids, tid)
            + _img(plots_dir / plot_file(benchmark, buffer, COMPARISONS), _captions()[COMPARISONS]))


def build_report(study: Study, tables_dir: Path, plots_dir: Path, out: Path) -> None:
    cfg = study.config
    runs = pd.read_csv(io.BytesIO(read_result(tables_dir / ALL_RUNS, AGGREGATE_AGAIN)), keep_default_na=True)
    fidelities = ", ".join(sorted(set(runs.fidelity)))
    summary, sections = [], []
    for benchmark, buffer in study.tables():
        tid = table_name(benchmark, buffer)
        table = pd.read_csv(io.BytesIO(read_result(tables_dir / table_file(benchmark, buffer, "csv"), AGGREGATE_AGAIN)))
        subset = runs_for_table(runs[runs.in_table], benchmark, buffer)  # a sweep's selected points only
        healthy, failed_note = _failed_seeds(subset, cfg.get("include_failed_runs", False))
        items = "".join(f'<li class="finding {f.kind}">{f.html}</li>'
                        for f in findings(healthy, table, benchmark, buffer, study.precision))
        summary.append(f"<h3>{html.escape(benchmark)}, buffer {buffer}</h3><ul>{items}{failed_note}</ul>")
        ids = [row_id(r.method, r.preset, r.fidelity, r.buffer) for r in table.itertuples()]
        sections.append(f'<h2 id="{html.escape(tid)}">{html.escape(benchmark)}, buffer {buffer}</h2>')
        sections.append("<p class='note'>Mean ± std over seeds; every row states its fidelity.</p>")
        sections.append(_table_html(pretty(table), ids, tid))
        sections.extend(_img(plots_dir / plot_file(benchmark, buffer, plot), _captions()[plot]) for plot in PLOTS)
        sections.append(_comparisons_html(tables_dir, plots_dir, benchmark, buffer))
        keys = study.swept_keys(benchmark, buffer)
        if keys:
            sections.append(_selection_html(tables_dir, benchmark, buffer))
            sections.extend(_img(plots_dir / plot_file(benchmark, buffer, sensitivity_plot(key)),
                                 _captions()["sensitivity"]) for key in keys)
    uri = study.tracking_uri()
    ui, experiment_id = mlflow_ui(study)
    runs_page = (f'<a href="{html.escape(ui)}/#/experiments/{experiment_id}/runs?{UI_VIEW}">its runs table</a>'
                 if experiment_id is not None else "its runs table")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>WSCL study {html.escape(cfg['study'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>Wake-Sleep Consolidated Learning: study <code>{html.escape(cfg['study'])}</code></h1>",
        f"<p>Fidelity: <b>{html.escape(fidelities)}</b> (reference = the authors' code including the behaviours "
        "listed in docs/method.md §2b; corrected = their evident intent). "
        "Rows of different fidelities are never compared. "
        f"Seeds: {html.escape(study.describe_seeds())}. Runs: {len(runs)}.</p>",
        "<h2 id='summary'>Summary</h2><div class='summary'>",
        "<p class='note'>Computed from the results below: Class-IL final average accuracy; differences a − b are "
        f"paired over the seeds both presets have ({html.escape(study.describe_comparisons())}); verdicts compare "
        "with the paper (a Welch interval: its seeds are not ours) "
        f"({html.escape(reported_values()['source'])}) by the rule of wscl/study/reproduction.py.</p>",
        *summary, "</div>",
        "<h2 id='mlflow'>Finding a run in MLflow</h2>",
        f"<p>Experiment <code>{html.escape(cfg['study'])}</code> at <code>{html.escape(uri)}</code>"
        + ("" if ui != LOCAL_UI else " (browse it with <code>make mlflow-ui</code>)")
        + f", {runs_page} (the <i>Model training</i> view of MLflow's UI). One parent run per "
        "benchmark/buffer/method/preset/fidelity carries the seed mean and std of every final metric, its "
        "dataset and the verdicts; its children are the seeds. Each run id in the table at the end links to its "
        "run; in the runs search, <code>attributes.run_id = '&lt;id&gt;'</code> finds it, and "
        "<code>tags.`wscl.run_key` = 'results/runs/…'</code> finds a run folder's.</p>",
        *sections,
        "<h2 id='runs'>Runs</h2>", _runs_table(runs, (ui, experiment_id)),
        "<h2 id='provenance'>Provenance</h2>", _provenance(study, runs),
        "</body></html>",
    ]
    atomic_write_text(out, "\n".join(parts), sealed=True)


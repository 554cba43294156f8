"""The smoke study's results as a reader meets them: the one-page report in a real browser (headless
Chromium), Snakemake's own report, and the MLflow runs table (parents with seed statistics, datasets)."""
import json
import os
import re
import shutil
import statistics
import zipfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from workflow_support import snakemake

from wscl.study.outputs import COMPARISONS, PLOTS
from wscl.study.report import CAPTIONS

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1300,1000")
NUMBER = re.compile(r"[-+]?\d+\.\d+")


@pytest.fixture(scope="module")
def study(smoke):
    """The smoke study of tests/conftest.py, built once per test run for every workflow test."""
    return smoke


def client_for(workdir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'results/mlflow/mlflow.db'}")


def chromium(tmp_path: Path):
    """Debian's Chromium through Debian's chromedriver (nothing is downloaded). In CI it must be there."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        binary = None
    if not (binary and driver):
        message = "the browser test needs selenium, chromium and chromium-driver (.ci/run installs them)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def test_report_in_a_browser_shows_summary_tables_runs_and_provenance(study, tmp_path):
    from selenium.webdriver.common.by import By
    report = study / "results/report.html"
    browser = chromium(tmp_path)
    try:
        browser.get(report.as_uri())
        browser.execute_script("return document.readyState")
        # Every figure decodes.
        sizes = browser.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
        assert len(sizes) == len(PLOTS) + 1  # and the comparisons' intervals
        for alt, complete, width, height in sizes:
            assert complete and width > 0 and height > 0, alt
        captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "figcaption")]
        assert all(any(CAPTIONS[p] in c for c in captions) for p in (*PLOTS, COMPARISONS))

        def cell(table: str, row: str, col: str) -> str:
            return browser.find_element(
                By.CSS_SELECTOR, f'#table-{table} tr[data-row="{row}"] td[data-col="{col}"]').text

        # Every number of the summary is the one in the table it summarizes.
        numbers = browser.find_elements(By.CSS_SELECTOR, ".summary .num")
        assert numbers
        for span in numbers:
            shown = cell(span.get_attribute("data-table"), span.get_attribute("data-row"),
                         span.get_attribute("data-col"))
            assert NUMBER.search(shown).group() == span.text
        diffs = browser.find_elements(By.CSS_SELECTOR, ".summary .diff")
        assert diffs  # the smoke study has WSCL (full) and its base learner
        for span in diffs:
            t, col = span.get_attribute("data-table"), span.get_attribute("data-col")
            a = float(NUMBER.search(cell(t, span.get_attribute("data-row-a"), col)).group())
            b = float(NUMBER.search(cell(t, span.get_attribute("data-row-b"), col)).group())
            assert float(span.text) == pytest.approx(a - b, abs=0.011)
        for span in browser.find_elements(By.CSS_SELECTOR, ".summary .verdict"):
            assert cell(span.get_attribute("data-table"), span.get_attribute("data-row"),
                        span.get_attribute("data-col")) == span.text
        summary = browser.find_element(By.CSS_SELECTOR, ".summary").text
        assert "Best (reference)" in summary and "full vs base (reference): er_ace/full" in summary
        # The comparisons table gives each comparison's answer, and the summary says the same.
        answers = browser.find_elements(By.CSS_SELECTOR, '#table-synthetic_buffer20_comparisons td[data-col="answer"]')
        assert answers and all(a.text and f"{a.text}" in summary for a in answers)

        # One row per run, with the MLflow run id the run was logged under.
        experiment = client_for(study).get_experiment_by_name("smoke")
        children = {r.info.run_id: r for r in client_for(study).search_runs([experiment.experiment_id])
                    if "mlflow.parentRunId" in r.data.tags}
        rows = browser.find_elements(By.CSS_SELECTOR, "#table-runs tr[data-row]")
        assert len(rows) == len(children) == 4
        for row in rows:
            run_id = row.find_element(By.CSS_SELECTOR, 'td[data-col="MLflow run id"]').text
            seed = row.find_element(By.CSS_SELECTOR, 'td[data-col="seed"]').text
            preset = row.find_element(By.CSS_SELECTOR, 'td[data-col="preset"]').text
            assert children[run_id].data.tags["seed"] == seed and children[run_id].data.tags["preset"] == preset
            link = row.find_element(By.CSS_SELECTOR, 'td[data-col="MLflow run id"] a').get_attribute("href")
            assert link.endswith(f"/#/experiments/{experiment.experiment_id}/runs/{run_id}"
                                 "?workflowType=machine_learning")
            metrics = json.loads((study / children[run_id].data.tags["wscl.run_key"] / "metrics.json").read_text())
            acc = row.find_element(By.CSS_SELECTOR, 'td[data-col="Class-IL acc"]').text
            assert acc == f"{metrics['class_il']['final_avg_acc']:.2f}"

        provenance = browser.find_element(By.ID, "datasets").text + browser.find_element(By.ID, "provenance").text
        page = browser.find_element(By.TAG_NAME, "body").text
        assert metrics["git_commit"] in page and "working tree" in page
        for name in ("python", "torch", "snakemake", "mlflow"):
            assert name in page
        assert "synthetic" in provenance and "none: generated" in provenance
        assert metrics["dataset_sha256"] in provenance  # generated data has a content, and its digest
        browser.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").stat().st_size > 10_000
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        browser.quit()
    # Self-contained: every image is embedded, no style sheet or script is fetched (links only navigate).
    html = report.read_text()
    assert re.findall(r"""src=["']([a-z]+:)""", html) == ["data:"] * (len(PLOTS) + 1)
    assert "<link" not in html and "<script" not in html and "url(" not in html


def test_the_reports_mlflow_links_open_the_model_training_view(study, tmp_path):
    """MLflow 3.17's UI takes its GenAI or Model training view from the link or the browser's memory, never
    from the experiment (a fresh browser starts in GenAI): the report's links name the view. Followed in a
    fresh browser against the study's store, they open the runs table and a run's metrics."""
    import signal
    import subprocess
    import time

    from conftest import wait_until_healthy
    from selenium.webdriver.common.by import By
    from workflow_support import BIN, free_port
    port = free_port()
    store = f"sqlite:///{study / 'results/mlflow/mlflow.db'}"
    with open(tmp_path / "ui.log", "w") as log:
        ui = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", store, "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"], stdout=log, stderr=subprocess.STDOUT,
                              process_group=0)
    browser = None
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", ui, tmp_path / "ui.log")
        browser = chromium(tmp_path)
        browser.get((study / "results/report.html").as_uri())
        runs_page = browser.find_element(By.PARTIAL_LINK_TEXT, "its runs table").get_attribute("href")
        run_page = browser.find_element(By.CSS_SELECTOR, 'td[data-col="MLflow run id"] a').get_attribute("href")
        run_id = run_page.split("/runs/")[1].split("?")[0]
        here = f"http://127.0.0.1:{port}"

        def shows(url: str, text: str) -> str:
            browser.get(url.replace("http://127.0.0.1:5000", here))
            deadline = time.time() + 90
            while time.time() < deadline:
                body = browser.find_element(By.TAG_NAME, "body").text
                if text in body:
                    return body
                time.sleep(1)
            raise AssertionError(f"{url} did not show {text!r}:\n{body[:2000]}")

        experiment = client_for(study).get_experiment_by_name("smoke")
        parents = [r.info.run_name for r in client_for(study).search_runs([experiment.experiment_id])
                   if "mlflow.parentRunId" not in r.data.tags]
        body = shows(runs_page, parents[0])
        assert all(name in body for name in parents)
        assert "workflowType=machine_learning" in browser.current_url and "/runs" in browser.current_url
        # The Model training sidebar (its model registry), not the GenAI one (judges, playground).
        assert "Model registry" in body and "Judges" not in body and "Playground" not in body
        body = shows(run_page, "class_il/final_avg_acc")
        assert client_for(study).get_run(run_id).info.run_name in body
        browser.save_screenshot(str(tmp_path / "mlflow_run.png"))
    finally:
        if browser is not None:
            browser.quit()
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


def test_snakemake_report_holds_tables_and_figures_by_benchmark_and_buffer(study):
    done = snakemake(study, "--report", "results/report.zip")
    archive = study / "results/report.zip"
    assert archive.exists(), done.stderr[-2000:]
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        text = "\n".join(z.read(n).decode(errors="ignore") for n in names if n.endswith((".js", ".html")))
    for plot in PLOTS:
        assert any(n.endswith(f"synthetic_buffer20_{plot}.png") for n in names), plot
    assert any(n.endswith("synthetic_buffer20.csv") for n in names)
    assert any(n.endswith("report.html") for n in names)
    # Categories and captions as marked in the rules.
    assert "synthetic" in text and "buffer 20" in text
    assert "Class-IL forgetting against final accuracy" in text


def test_mlflow_parents_carry_seed_statistics_verdict_tags_and_datasets(study):
    client = client_for(study)
    experiment = client.get_experiment_by_name("smoke")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    parents = {r.info.run_id: r for r in runs if "wscl.group" in r.data.tags}
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 2
    for parent_id, parent in parents.items():
        mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent_id]
        assert len(mine) == 2 and parent.data.metrics["seeds"] == 2
        for key in ("class_il/final_avg_acc", "class_il/forgetting", "task_il/final_avg_acc", "task_il/bwt"):
            values = [c.data.metrics[key] for c in mine]
            assert parent.data.metrics[key] == pytest.approx(statistics.mean(values), abs=1e-6)
            assert parent.data.metrics[f"{key}_std"] == pytest.approx(statistics.stdev(values), abs=1e-6)
        # The parent spans its children, instead of lasting a few milliseconds.
        assert parent.info.end_time >= max(c.info.end_time for c in mine)
        assert parent.data.tags["preset"] in ("base", "full") and parent.data.tags["fidelity"] == "reference"
    # full's parent carries its paired comparison with base, as the comparisons table states it
    [full] = [p for p in parents.values() if p.data.tags["preset"] == "full"]
    import pandas as pd
    [row] = pd.read_csv(study / "results/tables/synthetic_buffer20_comparisons.csv").to_dict("records")
    answer, shown = full.data.tags["compare.base"].split(": ", 1)
    assert answer == row["answer"] and float(shown.split()[0]) == pytest.approx(row["difference"], abs=0.006)
    assert full.data.tags["compare.base"].endswith(f", {row['seeds']} seeds, {row['stopped']}")
    assert full.data.metrics["compare/base/seeds"] == row["seeds"] == 2
    assert full.data.metrics["compare/base/low"] == pytest.approx(row["low"], abs=1e-4)
    for run in list(parents.values()) + children:
        [dataset] = [d.dataset for d in run.inputs.dataset_inputs]
        # generated data has a digest like prepared data: its content's SHA-256 (first 36 digits in MLflow)
        sha = json.loads(dataset.profile)["sha256"]
        assert dataset.name == "synthetic" and len(sha) == 64 and dataset.digest == sha[:36]
    for child in children:
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert "accuracy_matrix.png" in artifacts


def fake_runs(values: dict):
    """Per-seed runs of seq-cifar10, buffer 200: (preset, fidelity) -> Class-IL final accuracies."""
    import pandas as pd

    from wscl.method.metrics import SUMMARY_KEYS
    rows = []
    for (preset, fidelity), accs in values.items():
        for seed, acc in enumerate(accs):
            row = {"benchmark": "seq-cifar10", "buffer": 200, "method": "er_ace", "preset": preset,
                   "fidelity": fidelity, "seed": seed}
            for setting in ("class_il", "task_il"):
                for key in SUMMARY_KEYS:
                    row[f"{setting}_{key}"] = acc if key == "final_avg_acc" else 10.0 + seed
            rows.append(row)
    return pd.DataFrame(rows)


def test_summary_compares_only_rows_of_one_fidelity_and_reuses_the_tables_verdicts():
    from wscl.study.aggregate import pretty, summary_table
    from wscl.study.comparisons import paired
    from wscl.study.report import findings, row_id
    values = {("base", "reference"): [60.0, 62.0, 61.0], ("authors", "reference"): [70.0, 72.5, 71.0],
              ("full", "reference"): [66.0, 69.0, 67.5], ("no_nrem", "reference"): [64.0, 66.0, 65.5],
              ("base", "corrected"): [80.0, 81.0, 79.0], ("full", "corrected"): [75.0, 74.0, 76.0]}
    runs = fake_runs(values)
    table = summary_table(runs, "seq-cifar10", 200, None)
    found = findings(runs, table, "seq-cifar10", 200)
    text = {f.kind: [x.html for x in found if x.kind == f.kind] for f in found}
    # Best per fidelity: authors among the reference rows, base among the corrected ones.
    assert [("authors" in h, "base" in h) for h in text["best"]] == [(False, True), (True, False)]
    assert "Best (corrected)" in text["best"][0] and "Best (reference)" in text["best"][1]
    # WSCL vs base: authors and full at reference, full at corrected; never across fidelities.
    pairs = [(f.refs[0]["row"], f.refs[1]["row"]) for f in found if f.kind == "vs_base"]
    pair = {(preset, fidelity): (row_id("er_ace", preset, fidelity, 200), row_id("er_ace", "base", fidelity, 200))
            for preset, fidelity in (("full", "corrected"), ("authors", "reference"), ("full", "reference"))}
    assert sorted(pairs) == sorted(pair.values())
    # full vs the authors' WSCL, where both ran (reference): full - authors
    [versus] = text["vs_wscl"]
    seeds = {key: dict(enumerate(accs)) for key, accs in values.items()}  # seed i: the i-th value of each preset
    gap = paired(seeds[("full", "reference")], seeds[("authors", "reference")])
    assert "full vs authors (reference)" in versus and f">{gap.difference:+.2f}</span>" in versus
    expected = paired(seeds[("full", "reference")], seeds[("no_nrem", "reference")])
    # full - no_nrem per seed: 2, 3, 2 -> 2.33 +- t(2) * 0.577 / sqrt(3) = 2.33 +- 1.43 (paired, not Welch)
    assert (expected.low, expected.high) == pytest.approx((0.8991, 3.7676), abs=1e-3)
    [ablation] = text["ablation"]
    assert f">{expected.difference:+.2f}</span>" in ablation
    assert f"[{expected.low:+.2f}, {expected.high:+.2f}]" in ablation
    # Verdicts: the paper reports ER-ACE + WSCL at seq-cifar10/200, so authors and full rows get the table's words.
    verdicts = pretty(table)["verdict acc"]
    shown = [v for v in verdicts if v]
    assert len(shown) == 3 and all(any(v in h for h in text["verdict"]) for v in shown)


def test_parent_runs_get_the_tables_verdicts_and_seed_statistics():
    from wscl.study.aggregate import pretty, summary_table
    from wscl.tracking.rows import parent_metrics, parent_tags
    values = {("authors", "reference"): [70.0, 72.5, 71.0, 69.0], ("base", "reference"): [60.0, 61.0, 59.0, 62.0]}
    table = summary_table(fake_runs(values), "seq-cifar10", 200, None)
    nice = pretty(table)
    for i, row in enumerate(table.to_dict("records")):
        tags, metrics = parent_tags(row), parent_metrics(row)
        accs = values[(row["preset"], row["fidelity"])]
        assert metrics["class_il/final_avg_acc"] == pytest.approx(statistics.mean(accs))
        assert metrics["class_il/final_avg_acc_std"] == pytest.approx(statistics.stdev(accs))
        assert metrics["seeds"] == 4 and tags["fidelity"] == "reference"
        if row["preset"] == "authors":  # the paper reports ER-ACE + WSCL here: both paper cells get a verdict
            assert tags["verdict.class_il.final_avg_acc"] == nice["verdict acc"].iloc[i] != ""
            assert tags["verdict.class_il.forgetting"] == nice["verdict forgetting"].iloc[i] != ""
        else:
            assert not any(k.startswith("verdict.") for k in tags)


def test_snakemake_captions_say_what_the_report_says():
    repo = Path(__file__).resolve().parents[1]
    for plot in PLOTS:
        assert CAPTIONS[plot] == " ".join((repo / f"report/{plot}.rst").read_text().split())


def test_captions_are_read_from_their_rst_files_from_any_working_directory(tmp_path, monkeypatch):
    from wscl.core.errors import ConfigError
    from wscl.study.report import read_captions
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)  # the checkout the package runs from is found without the working directory
    assert read_captions() == CAPTIONS
    folder = tmp_path / "captions"
    shutil.copytree(repo / "report", folder)
    (folder / f"{PLOTS[0]}.rst").write_text("A changed\ncaption.\n")
    assert read_captions(folder)[PLOTS[0]] == "A changed caption."
    (folder / f"{PLOTS[-1]}.rst").unlink()
    with pytest.raises(ConfigError, match=f"captions.*{folder}"):
        read_captions(folder)


def test_a_preset_added_to_the_registry_gets_findings_and_a_colour(monkeypatch):
    """The registry is the one list of presets: an ablation added there is compared with full in the summary
    and has its own colour in every figure, with no other edit."""
    from wscl.settings import config
    from wscl.study.aggregate import summary_table
    from wscl.study.plots import style
    from wscl.study.report import findings
    spec = {"role": "ablation", "colour": "#123456", "about": "[ours] full without the merge: does it help?",
            "settings": {"wscl": {"stm": {"size": 0}}}}
    monkeypatch.setitem(config.PRESET_SPECS, "no_merge", spec)
    assert config.presets_of("ablation")[-1] == "no_merge" and "no_merge" not in config.presets_of("wscl")
    values = {("base", "reference"): [60.0, 62.0, 61.0], ("full", "reference"): [66.0, 69.0, 67.5],
              ("no_merge", "reference"): [64.0, 66.0, 65.5]}
    runs = fake_runs(values)
    found = findings(runs, summary_table(runs, "seq-cifar10", 200, None), "seq-cifar10", 200)
    ablations = [f.html for f in found if f.kind == "ablation"]
    assert len(ablations) == 1 and "full vs no_merge (reference)" in ablations[0]
    assert style("er_ace", "no_merge", "reference")["color"] == "#123456"
    assert style("er_ace", "full", "reference")["color"] == config.PRESET_SPECS["full"]["colour"]

"""One self-describing, checksummed archive of a study, and its verification.

Contents: README.txt, study_config.json, the workflow's config files, every run's resolved config and
metrics, tables, plots, report, an MLflow export (runs with params, tags and metric histories),
the environment, and MANIFEST.sha256 listing the SHA-256 of every other member.
"""
from __future__ import annotations

import hashlib
import json
import tarfile
import time
from pathlib import Path

from wscl.core.errors import ArchiveError
from wscl.core.provenance import environment
from wscl.core.safe_io import atomic_tar_gz, read_result
from wscl.study.studies import Study

MANIFEST = "MANIFEST.sha256"
# What to do about a damaged or missing member: every file packed here was sealed by the job that wrote it.
RUN_AGAIN = "delete it and rerun the workflow (the run resumes from its checkpoint.pt and writes it again)"
RESULTS_AGAIN = "delete it and rerun the workflow (aggregation and the report write it again)"


def mlflow_export(uri: str, experiment: str) -> dict:
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {"tracking_uri": uri, "experiment": experiment, "runs": []}
    runs = []
    for run in client.search_runs([exp.experiment_id], max_results=50000):
        histories = {key: [{"step": m.step, "value": m.value, "timestamp": m.timestamp}
                           for m in client.get_metric_history(run.info.run_id, key)]
                     for key in run.data.metrics}
        runs.append({"run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
                     "params": run.data.params, "tags": run.data.tags, "metrics": histories,
                     "artifacts": [a.path for a in client.list_artifacts(run.info.run_id)]})
    return {"tracking_uri": uri, "experiment": experiment, "experiment_id": exp.experiment_id, "runs": runs}


def with_models(study: Study) -> bool:
    return study.config.get("archive", {}).get("models", False)


def _members(study: Study, uri: str) -> dict[str, bytes]:
    results = Path(study.results)
    files: dict[str, bytes] = {}
    files["study_config.json"] = json.dumps(study.config, indent=2, sort_keys=True).encode()
    for path in sorted(Path("config").glob("*.yaml")):
        files[f"config/{path.name}"] = path.read_bytes()
    for key in study.runs():
        run = Path(study.run_dir(key))
        rel = run.relative_to(results)
        names = ("metrics.json", "resolved_config.yaml", *(["model.pt"] if with_models(study) else []))
        for name in names:
            files[f"{rel}/{name}"] = read_result(run / name, RUN_AGAIN)
    # The study's own tables and figures, by name: nothing else that lies in those folders
    selection = [study.selection_file()] if study.sweeps else []  # the points chosen on the tuning split
    selection += [study.pilot_file()] if study.precision else []  # the pilot that fixed the seed counts
    for path in map(Path, [*study.table_files(), study.all_runs_file(), *selection, *study.plot_files()]):
        files[f"{path.parent.name}/{path.name}"] = read_result(path, RESULTS_AGAIN)
    files["report.html"] = read_result(results / "report.html", RESULTS_AGAIN)
    files["mlflow_export.json"] = json.dumps(mlflow_export(uri, study.config["study"]), indent=1).encode()
    files["environment.json"] = json.dumps(environment(), indent=2).encode()
    files["README.txt"] = (
        f"WSCL study '{study.config['study']}' "
        f"(fidelities {', '.join(sorted({k.fidelity for k in study.runs()}))}), archived "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}.\n"
        "study_config.json  the study configuration as validated by the workflow\n"
        "config/            the workflow's configuration files\n"
        "runs/              per run: resolved_config.yaml (every trainer setting) and metrics.json"
        + (", model.pt (the final network; `wscl evaluate` scores it)" if with_models(study) else "") + "\n"
        "tables/, plots/    aggregated results; report.html shows them on one page\n"
        "mlflow_export.json every MLflow run of the study with params, tags and metric histories\n"
        "environment.json   Python, torch, CUDA and Snakemake versions, git commit, pip freeze\n"
        f"{MANIFEST}    SHA-256 of every other member; check with `python -m wscl verify-archive FILE`\n"
    ).encode()
    return files


def write_archive(study: Study, uri: str, out: Path) -> Path:
    files = _members(study, uri)
    manifest = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items()))
    files[MANIFEST] = manifest.encode()
    atomic_tar_gz(out, files, top=out.name.removesuffix(".tar.gz"), mtime=int(time.time()))
    return out


def verify_archive(path: Path) -> list[str]:
    """Problems found (empty = every checksum matches and nothing is missing or extra)."""
    problems = []
    if not Path(path).is_file():
        raise ArchiveError(f"no such archive: {path}")
    contents = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile():
                    name = member.name.split("/", 1)[1] if "/" in member.name else member.name
                    contents[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as exc:  # truncated or not a tar.gz at all
        raise ArchiveError(f"{path} is not a readable tar.gz archive ({exc}); copy it again from its source") from None
    if MANIFEST not in contents:
        return [f"{MANIFEST} is missing"]
    listed = {}
    for line in contents.pop(MANIFEST).decode().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    for name, digest in listed.items():
        if name not in contents:
            problems.append(f"missing: {name}")
        elif hashlib.sha256(contents[name]).hexdigest() != digest:
            problems.append(f"checksum differs: {name}")
    problems += [f"not in manifest: {name}" for name in sorted(set(contents) - set(listed))]
    return problems

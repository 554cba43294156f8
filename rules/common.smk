# Shared work: validate the config once, enumerate the runs, build each run's trainer configuration.
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

from wscl.settings.config import CHOICES, METHODS, PRESETS
from wscl.settings.schema import write_schemas
from wscl.run.placement import gpus_for
from wscl.study.studies import Study, check_trainer_sections
from wscl.study.outputs import caption_of
from wscl.study.sweeps import TUNED

min_version("8.10")

# The trainer's own check first (its messages name the nearest valid key), then the study schema, which refers
# to the trainer schema that the package generates from its defaults and registries.
check_trainer_sections(config)
validate(config, write_schemas(workflow.source_path("config.schema.yaml"), ".snakemake/wscl-schemas"))
STUDY = Study(config)
R = STUDY.results
ALL_RUNS = STUDY.all_runs_file()

# The GPUs of this machine that the study's runtime.device uses (all for auto and cuda, one for cuda:N, none for
# cpu), shared by runtime.runs_per_gpu training runs (wscl/run/placement.py): the `gpu` resource counts shares,
# GPUs x K, unless the command line gives `--resources gpu=N`. A training job claims its own share when it
# starts; with a cluster executor each job is placed on its node's GPUs the same way.
LOCAL_GPUS = gpus_for(STUDY.device())
if LOCAL_GPUS and "gpu" not in workflow.global_resources:
    workflow.register_resource("gpu", len(LOCAL_GPUS) * STUDY.runs_per_gpu())


# Jobs call the project's `wscl` command: put the bin/ of the Python that runs Snakemake first on the jobs'
# PATH, so that they find it whatever the caller's PATH is (a cluster job runs the same Python).
envvars:
    "PATH",


os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


# Only training and data preparation are worth a cluster job; the rest is bookkeeping on the submit host.
localrules:
    all,
    mlflow_setup,
    mlflow_sync,
    pilot,
    select,
    aggregate,
    report,
    archive,


wildcard_constraints:
    benchmark="[A-Za-z0-9_.-]+",
    buffer=r"\d+",
    method="|".join(METHODS),
    variant="(" + "|".join(PRESETS) + ")(@[^/]+)?",  # a preset, with its sweep point (wscl/study/sweeps.py)
    fidelity="|".join(CHOICES["fidelity"]),
    seed=r"\d+",
    dataset="[A-Za-z0-9_.-]+",


def run_dir(wc):
    return STUDY.run_dir(STUDY.key(wc))


def selection_input(wc):
    """The sweep selection a run at the tuned point reads (nothing for other runs)."""
    return [STUDY.selection_file()] if STUDY.key(wc).point == TUNED else []


def tuned_args(wc):
    """`wscl train` options of a run at the tuned point: where the point selected for its `tuned_from` preset is."""
    key = STUDY.key(wc)
    if key.point != TUNED:
        return ""
    return f"--point-from {STUDY.selection_file()} --point-group {STUDY.tuned_from(key).group}"


def dataset_input(wc):
    """The prepared dataset a run trains on (nothing for the generated `synthetic`)."""
    return STUDY.dataset_marker(wc.benchmark)


def all_metrics():
    return [f"{STUDY.run_dir(key)}/metrics.json" for key in STUDY.runs()]


def planned_metrics(wildcards):
    """Every run's metrics.json; with seeds chosen by precision, once the pilot checkpoint fixed the seed counts."""
    if STUDY.precision:
        checkpoints.pilot.get()
    return all_metrics()


def pilot_metrics():
    return [f"{STUDY.run_dir(key)}/metrics.json" for key in STUDY.pilot_runs()]


def pilot_study():
    """The study as the pilot sees it: its pilot seeds as a count, so that a new half-width or `max` leaves the
    pilot done (only the seeds it then asks for train)."""
    return json.dumps({**config, "seeds": len(STUDY.seeds)}, sort_keys=True)


def pilot_input(wildcards):
    """The pilot's result, for the steps that read the seed counts (nothing for a fixed seed count)."""
    return [checkpoints.pilot.get().output[0]] if STUDY.precision else []


def swept_metrics():
    """The runs a sweep's selection reads: every point of every swept group (not the `tuned` runs)."""
    return [f"{STUDY.run_dir(key)}/metrics.json" for key in STUDY.runs() if key.point not in ("", TUNED)]


def mirror_args(wildcards):
    mirrors = config["data"]["mirrors"]
    return " ".join(f"--mirror {raw}={path}" for raw, paths in mirrors.items() for path in paths)


def train_gpus():
    """GPU units a training job takes: what the study asks (a whole GPU per cluster job), at least one share of
    a local GPU when this machine has GPUs."""
    return max(config["resources"]["train"]["gpu"], 1 if LOCAL_GPUS else 0)


def signal_notice(runtime_minutes):
    """sbatch's --signal for a training job: SIGUSR1 five minutes before its time limit (a tenth of the limit
    for short jobs), so that `wscl train` checkpoints and exits with 75, which `retries` resubmits."""
    return f"--signal=USR1@{min(300, int(runtime_minutes * 6))}"


def artifact_root_arg():
    """A local store keeps its artifacts beside it; a tracking server decides (and serves them) itself."""
    uri = STUDY.tracking_uri()
    return "" if uri.startswith(("http://", "https://")) else f"--artifact-root {R}/mlflow/artifacts"


def folder_of(files):
    return str(Path(files[0]).parent)


def reported_tables():
    """The tables, the CSVs marked for Snakemake's report (category benchmark, subcategory buffer)."""
    out = []
    for path, name, buffer, fmt in STUDY.table_outputs():
        if fmt == "csv":
            labels = {"what": "table", "benchmark": name, "buffer": str(buffer)}
            caption = "../report/table.rst"
            path = report(path, caption=caption, category=name, subcategory=f"buffer {buffer}", labels=labels)
        out.append(path)
    for path, name, buffer, fmt in STUDY.selection_outputs():
        labels = {"what": "sweep selection", "benchmark": name, "buffer": str(buffer)}
        if fmt == "csv":
            path = report(
                path, caption="../report/selection.rst", category=name, subcategory=f"buffer {buffer}", labels=labels
            )
        out.append(path)
    out += [path for path, *_ in STUDY.comparison_outputs()]  # each table's paired comparisons
    return out


def reported_plots():
    """Every figure, marked for Snakemake's report with its caption (report/<plot>.rst)."""
    out = []
    for path, name, buffer, plot in STUDY.plot_outputs():
        labels = {"what": "figure", "figure": plot, "benchmark": name, "buffer": str(buffer)}
        caption = f"../report/{caption_of(plot)}.rst"
        # One line: Snakemake's parser reads `report` at the start of a line as the report directive.
        out.append(report(path, caption=caption, category=name, subcategory=f"buffer {buffer}", labels=labels))
    return out

# Wake-Sleep Consolidated Learning: from raw data to the paper's tables, plots, MLflow runs and an archive.
# The default study (config/config.yaml) runs offline; `--configfile config/paper.yaml` is the paper grid.

# The default study, unless --configfile names another one (which then replaces it instead of being merged).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/aggregate.smk"
include: "rules/archive.smk"


onstart:
    print(
        f"WSCL study '{config['study']}': {len(all_metrics())} runs, results in {R}/, "
        f"MLflow at {STUDY.tracking_uri()}"
    )


onsuccess:
    print(f"Done. Tables in {R}/tables/, plots in {R}/plots/, report at {R}/report.html")


onerror:
    print(f"A job failed; its log is under {R}/logs/. Rerunning the same command resumes interrupted trainings.")


rule all:
    default_target: True
    input:
        f"{R}/report.html",
        ALL_RUNS,
        f"{R}/mlflow/sync.json",

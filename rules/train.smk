# Training: one job per benchmark x buffer x method x preset[@sweep point] x fidelity x seed. The trainer resumes from its own
# checkpoint when a job is rerun after an interruption; MLflow parents are created once, up front.
# The tracking destination is a parameter of mlflow_setup only: training jobs read it, with their parent
# run ids, from setup.json, so moving a finished study to another store reruns setup and sync, not training.


rule mlflow_setup:
    output:
        f"{R}/mlflow/setup.json",
    log:
        f"{R}/logs/mlflow_setup.log",
    benchmark:
        f"{R}/job_usage/mlflow_setup.tsv"
    conda:
        "../envs/wscl.yaml"
    params:
        uri=STUDY.tracking_uri(),
        experiment=config["study"],
        artifacts=artifact_root_arg(),
        groups=" ".join(f"--group {shlex.quote(g)}" for g in STUDY.groups()),
    shell:
        "wscl mlflow-setup --uri {params.uri:q} --experiment {params.experiment:q} "
        "{params.artifacts} {params.groups} --out {output} > {log} 2>&1"


rule train:
    input:
        dataset=dataset_input,
        # a run at a tuned point needs the selection (study/selection.py); others nothing
        selection=selection_input,
        # The parents exist once setup ran; adding a parent later must not rerun finished trainings.
        mlflow=ancient(f"{R}/mlflow/setup.json"),
    output:
        f"{R}/runs/{{benchmark}}/buffer{{buffer}}/{{method}}/{{variant}}/{{fidelity}}/seed{{seed}}/metrics.json",
    log:
        f"{R}/logs/train/{{benchmark}}/buffer{{buffer}}/{{method}}/{{variant}}/{{fidelity}}/seed{{seed}}.log",
    benchmark:
        f"{R}/job_usage/train/{{benchmark}}/buffer{{buffer}}/{{method}}/{{variant}}/{{fidelity}}/seed{{seed}}.tsv"
    conda:
        "../envs/wscl.yaml"
    threads: config["resources"]["train"]["threads"]
    resources:
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
        gpu=train_gpus(),
        slurm_extra=signal_notice(config["resources"]["train"]["runtime"]),  # read by the Slurm executor only
    params:
        trainer=lambda wc: json.dumps(STUDY.trainer_config(STUDY.key(wc)), sort_keys=True),
        out=run_dir,
        group=lambda wc: STUDY.key(wc).group,
        tuned=tuned_args,
    shell:
        "wscl train --study-settings {params.trainer:q} --out {params.out} --threads {threads} --quiet "
        "--record-failure --mlflow-setup {input.mlflow} --mlflow-parent-group {params.group:q} {params.tuned} "
        "> {log} 2>&1"


rule mlflow_sync:
    input:
        setup=f"{R}/mlflow/setup.json",
        metrics=planned_metrics,
    output:
        f"{R}/mlflow/sync.json",
    log:
        f"{R}/logs/mlflow_sync.log",
    benchmark:
        f"{R}/job_usage/mlflow_sync.tsv"
    conda:
        "../envs/wscl.yaml"
    params:
        study=lambda wc: json.dumps(config, sort_keys=True),
    shell:
        # Training jobs log their own runs; this logs those the destination lacks (a run finished while the
        # store was unreachable, a study moved to another store), before the aggregation reads the run ids.
        "wscl mlflow-sync --study-json {params.study:q} --setup {input.setup} --out {output} > {log} 2>&1"

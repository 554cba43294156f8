# Training: one job per benchmark x buffer x method x preset x fidelity x seed. The trainer resumes from its own
# checkpoint when a job is rerun after an interruption; MLflow parents are created once, up front.


rule mlflow_setup:
    output:
        f"{R}/mlflow/setup.json",
    params:
        uri=STUDY.tracking_uri(),
        experiment=config["study"],
        artifacts=f"{R}/mlflow/artifacts",
        groups=" ".join(f"--group {g}" for g in STUDY.groups()),
    log:
        f"{R}/logs/mlflow_setup.log",
    benchmark:
        f"{R}/benchmarks/mlflow_setup.tsv"
    shell:
        "wscl mlflow-setup --uri {params.uri:q} --experiment {params.experiment:q} "
        "--artifact-root {params.artifacts:q} {params.groups} --out {output} > {log} 2>&1"


rule train:
    input:
        dataset=dataset_input,
        # The parents exist once setup ran; adding a parent later must not rerun finished trainings.
        mlflow=ancient(f"{R}/mlflow/setup.json"),
    output:
        f"{R}/runs/{{benchmark}}/buffer{{buffer}}/{{method}}/{{preset}}/{{fidelity}}/seed{{seed}}/metrics.json",
    params:
        trainer=lambda wc: json.dumps(STUDY.trainer_config(STUDY.key(wc)), sort_keys=True),
        out=run_dir,
        uri=STUDY.tracking_uri(),
        experiment=config["study"],
        group=lambda wc: STUDY.key(wc).group,
    threads: config["resources"]["train"]["threads"]
    resources:
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
        gpu=config["resources"]["train"]["gpu"],
    log:
        f"{R}/logs/train/{{benchmark}}/buffer{{buffer}}/{{method}}/{{preset}}/{{fidelity}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{benchmark}}/buffer{{buffer}}/{{method}}/{{preset}}/{{fidelity}}/seed{{seed}}.tsv"
    shell:
        "wscl train --config-json {params.trainer:q} --out {params.out} --threads {threads} --quiet "
        "--mlflow-uri {params.uri:q} --mlflow-experiment {params.experiment:q} "
        "--mlflow-parent-group {params.group:q} > {log} 2>&1"

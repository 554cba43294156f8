# Archive: config, resolved run configs, metrics, tables, plots, report, MLflow export and the
# environment in one tar.gz with a SHA-256 manifest (`python -m wscl verify-archive FILE` checks it).


rule archive:
    input:
        metrics=planned_metrics,
        report=f"{R}/report.html",
        runs=ALL_RUNS,
    output:
        f"{R}/archive/{config['study']}.tar.gz",
    log:
        f"{R}/logs/archive.log",
    benchmark:
        f"{R}/job_usage/archive.tsv"
    conda:
        "../envs/wscl.yaml"
    params:
        study=lambda wc: json.dumps(config, sort_keys=True),
        uri=STUDY.tracking_uri(),
    shell:
        "wscl archive --study-json {params.study:q} --mlflow-uri {params.uri:q} --out {output} > {log} 2>&1"

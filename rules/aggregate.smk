# Aggregation: tables per benchmark and buffer, plots, and a one-page HTML report. Tables, plots and the
# report are marked for Snakemake's own report (`snakemake --report results/report.zip`): category =
# benchmark, subcategory = buffer, captions in report/.


rule select:
    input:
        swept_metrics(),
    output:
        STUDY.selection_file(),
    log:
        f"{R}/logs/select.log",
    benchmark:
        f"{R}/job_usage/select.tsv"
    conda:
        "../envs/wscl.yaml"
    params:
        study=lambda wc: json.dumps(config, sort_keys=True),
    shell:
        "wscl select --study-json {params.study:q} --out {output} > {log} 2>&1"


# Seeds chosen by precision: the pilot's runs fix every comparison's seed count (Stein's procedure), so the runs
# after the pilot are known only once it ran; the inputs below that call `planned_metrics` wait for it.
checkpoint pilot:
    input:
        pilot_metrics(),
    output:
        STUDY.pilot_file(),
    log:
        f"{R}/logs/pilot.log",
    benchmark:
        f"{R}/job_usage/pilot.tsv"
    conda:
        "../envs/wscl.yaml"
    params:
        study=lambda wc: pilot_study(),
    shell:
        "wscl pilot --study-json {params.study:q} --out {output} > {log} 2>&1"


rule aggregate:
    input:
        metrics=planned_metrics,
        pilot=pilot_input,
        selection=[STUDY.selection_file()] if STUDY.sweeps else [],
        # Every finished run is in MLflow first (rule mlflow_sync), so all_runs.csv holds every run id; a later
        # sync alone (a move to another store) does not redo the tables.
        mlflow=ancient(f"{R}/mlflow/sync.json"),
    output:
        tables=reported_tables(),
        plots=reported_plots(),
        runs=ALL_RUNS,
    log:
        f"{R}/logs/aggregate.log",
    benchmark:
        f"{R}/job_usage/aggregate.tsv"
    conda:
        "../envs/wscl.yaml"
    params:
        study=lambda wc: json.dumps(config, sort_keys=True),
        tables=lambda wc, output: folder_of(output.tables),
        plots=lambda wc, output: folder_of(output.plots),
        uri=STUDY.tracking_uri(),
    shell:
        "wscl aggregate --study-json {params.study:q} --tables {params.tables} --plots {params.plots} "
        "--mlflow-uri {params.uri:q} > {log} 2>&1"


rule report:
    input:
        tables=STUDY.table_files(),
        plots=STUDY.plot_files(),
        runs=ALL_RUNS,
        mlflow=ancient(f"{R}/mlflow/setup.json"),  # the experiment id, for links into MLflow's UI
    output:
        report(
            f"{R}/report.html", caption="../report/report.rst", category="Summary", labels={"what": "one-page report"}
        ),
    log:
        f"{R}/logs/report.log",
    benchmark:
        f"{R}/job_usage/report.tsv"
    conda:
        "../envs/wscl.yaml"
    params:
        study=lambda wc: json.dumps(config, sort_keys=True),
        tables=lambda wc, input: folder_of(input.tables),
        plots=lambda wc, input: folder_of(input.plots),
    shell:
        "wscl report --study-json {params.study:q} --tables {params.tables} --plots {params.plots} "
        "--out {output} > {log} 2>&1"

# Aggregation: tables per benchmark and buffer, plots, and a one-page HTML report.


rule aggregate:
    input:
        all_metrics(),
    output:
        tables=STUDY.table_files(),
        plots=STUDY.plot_files(),
        runs=f"{R}/tables/all_runs.csv",
    params:
        study=lambda wc: json.dumps(config, sort_keys=True),
        tables=lambda wc, output: folder_of(output.tables),
        plots=lambda wc, output: folder_of(output.plots),
    log:
        f"{R}/logs/aggregate.log",
    benchmark:
        f"{R}/benchmarks/aggregate.tsv"
    shell:
        "wscl aggregate --study-json {params.study:q} --tables {params.tables} --plots {params.plots} "
        "> {log} 2>&1"


rule report:
    input:
        tables=STUDY.table_files(),
        plots=STUDY.plot_files(),
    output:
        f"{R}/report.html",
    params:
        study=lambda wc: json.dumps(config, sort_keys=True),
        tables=lambda wc, input: folder_of(input.tables),
        plots=lambda wc, input: folder_of(input.plots),
    log:
        f"{R}/logs/report.log",
    benchmark:
        f"{R}/benchmarks/report.tsv"
    shell:
        "wscl report --study-json {params.study:q} --tables {params.tables} --plots {params.plots} "
        "--out {output} > {log} 2>&1"

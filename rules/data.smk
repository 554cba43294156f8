# Data: fetch raw files (local mirrors first, then the official URLs), verify, convert to the canonical format.


rule prepare_dataset:
    output:
        f"{STUDY.data_root()}/{{dataset}}/meta.json",
    log:
        f"{R}/logs/data/{{dataset}}.log",
    benchmark:
        f"{R}/job_usage/data/{{dataset}}.tsv"
    conda:
        "../envs/wscl.yaml"
    params:
        root=lambda wc, output: Path(output[0]).parent.parent,
        mirrors=mirror_args,
        verify="" if config["data"]["verify_checksums"] else "--no-verify",
    shell:
        "wscl data prepare {wildcards.dataset} --root {params.root} {params.mirrors} {params.verify} > {log} 2>&1"

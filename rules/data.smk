# Data: fetch raw files (local mirrors first, then the official URLs), verify, convert to the canonical format.


def mirror_args(wildcards):
    mirrors = config["data"]["mirrors"]
    return " ".join(f"--mirror {raw}={path}" for raw, paths in mirrors.items() for path in paths)


rule prepare_dataset:
    output:
        f"{STUDY.data_root()}/{{dataset}}/meta.json",
    params:
        root=STUDY.data_root(),
        mirrors=mirror_args,
        verify="" if config["data"]["verify_checksums"] else "--no-verify",
    log:
        f"{R}/logs/data/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/data/{{dataset}}.tsv"
    shell:
        "python -m wscl data prepare {wildcards.dataset} --root {params.root} {params.mirrors} {params.verify} "
        "> {log} 2>&1"

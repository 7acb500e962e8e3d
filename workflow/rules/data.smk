# Datasets and reference batches. ImageNet is an external folder (config paths); only the toy digits
# dataset is materialised here.


rule make_digits:
    output:
        data=directory(LAYOUT.digits_dir()),
    params:
        args=args(JOBS.make_digits_args()),
    log:
        LAYOUT.log("make_digits"),
    threads: stage_threads("make_digits")
    resources:
        **stage_resources("make_digits"),
    shell:
        "python -m tensorar.make_digits --out {output.data:q} {params.args} > {log:q} 2>&1"


rule make_reference:
    input:
        **JOBS.dataset_inputs(),
    output:
        ref=LAYOUT.built_reference("{split}", "{size}"),
    params:
        args=job_args("make_reference", "split", "size"),
    log:
        LAYOUT.log("make_reference", "{split}-{size}"),
    threads: stage_threads("make_reference")
    resources:
        **stage_resources("make_reference"),
    shell:
        "python -m tensorar.make_reference {params.args} --out {output.ref:q} > {log:q} 2>&1"

# Datasets and reference batches. ImageNet is an external folder (config paths); only the toy digits
# dataset is materialised here.


rule make_digits:
    output:
        data=directory(PLAN.digits_dir()),
    params:
        args=args(PLAN.make_digits_args()),
    log:
        f"{R}/logs/make_digits.log",
    threads: stage_threads("make_digits")
    resources:
        **stage_resources("make_digits"),
    shell:
        "python -m tensorar.make_digits --out {output.data:q} {params.args} > {log:q} 2>&1"


rule make_reference:
    input:
        **PLAN.dataset_inputs(),
    output:
        ref=PLAN.built_reference("{split}", "{size}"),
    params:
        args=make_reference_args,
    log:
        f"{R}/logs/make_reference/{{split}}-{{size}}.log",
    threads: stage_threads("make_reference")
    resources:
        **stage_resources("make_reference"),
    shell:
        "python -m tensorar.make_reference {params.args} --out {output.ref:q} > {log:q} 2>&1"

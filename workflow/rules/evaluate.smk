# Metrics: ADM's FID / sFID / IS / precision / recall of every sample batch (Inception at paper scale,
# a digits classifier for the toy), and the draft-copying diagnostics of every TensorAR run.


rule train_classifier:
    input:
        **JOBS.dataset_inputs(),
    output:
        ckpt=LAYOUT.classifier(),
        report=LAYOUT.classifier_report(),
    params:
        args=args(JOBS.train_classifier_args()),
    log:
        LAYOUT.log("train_classifier"),
    threads: stage_threads("train_classifier")
    resources:
        **stage_resources("train_classifier"),
    shell:
        "python -m tensorar.train_classifier {params.args} --out {output.ckpt:q} > {log:q} 2>&1"


rule evaluate:
    input:
        unpack(job_inputs("evaluate", "backbone", "method", "seed", "tag")),
    output:
        metrics=LAYOUT.metrics("{backbone}", "{method}", "{seed}", "{tag}"),
    params:
        args=job_args("evaluate", "backbone", "method", "seed", "tag"),
    log:
        LAYOUT.log("evaluate", "{backbone}", "{method}", "seed{seed}", "{tag}"),
    benchmark:
        LAYOUT.benchmark("evaluate", "{backbone}", "{method}", "seed{seed}", "{tag}")
    threads: stage_threads("evaluate")
    resources:
        **stage_resources("evaluate"),
    shell:
        "python -m tensorar.evaluate {params.args} --out {output.metrics:q} > {log:q} 2>&1"


rule diagnose:
    input:
        unpack(job_inputs("diagnose", "backbone", "variant", "seed")),
    output:
        diagnostics=LAYOUT.diagnostics("{backbone}", "{variant}", "{seed}"),
    params:
        args=job_args("diagnose", "backbone", "variant", "seed"),
    log:
        LAYOUT.log("diagnose", "{backbone}", "tensorar-{variant}", "seed{seed}"),
    threads: stage_threads("diagnose")
    resources:
        **stage_resources("diagnose"),
    shell:
        "python -m tensorar.diagnose {params.args} --out {output.diagnostics:q} > {log:q} 2>&1"

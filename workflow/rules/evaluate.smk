# Metrics: ADM's FID / sFID / IS / precision / recall of every sample batch (Inception at paper scale,
# a digits classifier for the toy), and the draft-copying diagnostics of every TensorAR run.


rule train_classifier:
    input:
        **PLAN.dataset_inputs(),
    output:
        ckpt=PLAN.classifier(),
        report=PLAN.classifier().removesuffix(".pt") + ".json",
    params:
        args=args(PLAN.train_classifier_args()),
    log:
        f"{R}/logs/train_classifier.log",
    threads: stage_threads("train_classifier")
    resources:
        **stage_resources("train_classifier"),
    shell:
        "python -m tensorar.train_classifier {params.args} --out {output.ckpt:q} > {log:q} 2>&1"


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        metrics=PLAN.metrics("{backbone}", "{method}", "{seed}", "{tag}"),
    params:
        args=evaluate_args,
    log:
        f"{R}/logs/evaluate/{{backbone}}/{{method}}/seed{{seed}}/{{tag}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{backbone}}/{{method}}/seed{{seed}}/{{tag}}.tsv"
    threads: stage_threads("evaluate")
    resources:
        **stage_resources("evaluate"),
    shell:
        "python -m tensorar.evaluate {params.args} --out {output.metrics:q} > {log:q} 2>&1"


rule diagnose:
    input:
        unpack(diagnose_inputs),
    output:
        diagnostics=PLAN.diagnostics("{backbone}", "{variant}", "{seed}"),
    params:
        args=diagnose_args,
    log:
        f"{R}/logs/diagnose/{{backbone}}/tensorar-{{variant}}/seed{{seed}}.log",
    threads: stage_threads("diagnose")
    resources:
        **stage_resources("diagnose"),
    shell:
        "python -m tensorar.diagnose {params.args} --out {output.diagnostics:q} > {log:q} 2>&1"

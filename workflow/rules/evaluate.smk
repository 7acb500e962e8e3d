# Metrics: ADM's FID / sFID / IS / precision / recall of every sample batch (Inception at paper scale,
# a digits classifier for the toy), and the draft-copying diagnostics of every TensorAR run.


rule train_classifier:
    input:
        **dataset_inputs(),
    output:
        ckpt=f"{R}/features/classifier.pt",
        report=f"{R}/features/classifier.json",
    params:
        train=dataset_dir("train"),
        val=dataset_dir("val"),
        steps=config["evaluation"].get("classifier", {}).get("steps", 300),
        image_size=config["dataset"].get("image_size", 16),
    log:
        f"{R}/logs/train_classifier.log",
    threads: stage_threads("train_classifier")
    resources:
        **stage_resources("train_classifier"),
    shell:
        "python -m tensorar.train_classifier --data {params.train} --val-data {params.val} --out {output.ckpt} "
        "--steps {params.steps} --image-size {params.image_size} > {log} 2>&1"


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        metrics=f"{R}/metrics/{{backbone}}/{{method}}/seed{{seed}}/{{tag}}.json",
    params:
        ref=evaluate_reference,
        flags=evaluate_flags,
    log:
        f"{R}/logs/evaluate/{{backbone}}/{{method}}/seed{{seed}}/{{tag}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{backbone}}/{{method}}/seed{{seed}}/{{tag}}.tsv"
    threads: stage_threads("evaluate")
    resources:
        **stage_resources("evaluate"),
    shell:
        "python -m tensorar.evaluate {params.ref} {input.samples} --out {output.metrics} {params.flags} > {log} 2>&1"


rule diagnose:
    input:
        unpack(diagnose_inputs),
    output:
        diagnostics=f"{R}/diagnostics/{{backbone}}/tensorar-{{variant}}/seed{{seed}}.json",
    params:
        flags=diagnose_flags,
    log:
        f"{R}/logs/diagnose/{{backbone}}/tensorar-{{variant}}/seed{{seed}}.log",
    threads: stage_threads("diagnose")
    resources:
        **stage_resources("diagnose"),
    shell:
        "python -m tensorar.diagnose --ckpt {input.ckpt} {params.flags} --out {output.diagnostics} > {log} 2>&1"

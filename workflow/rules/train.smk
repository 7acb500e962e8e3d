# Training, one rule for every run: the toy base models from scratch (method base), and per backbone the
# TensorAR runs (tensorar-<variant>) and their equal-steps fine-tune control (finetune: same base, data,
# steps and lr_base, no plug-in). `final.pt` is the output (not the run folder), so a failed or
# preempted job keeps its checkpoints and resumes.


rule train:
    input:
        unpack(train_inputs),
    output:
        ckpt=f"{R}/runs/{{backbone}}/{{method}}/seed{{seed}}/final.pt",
        metrics=f"{R}/runs/{{backbone}}/{{method}}/seed{{seed}}/metrics.jsonl",
    params:
        args=train_args,
        launcher=launcher,
    log:
        f"{R}/logs/train/{{backbone}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{backbone}}/{{method}}/seed{{seed}}.tsv"
    threads: stage_threads("train")
    resources:
        **stage_resources("train"),
    shell:
        "{params.launcher} -m tensorar.train {params.args} > {log:q} 2>&1"

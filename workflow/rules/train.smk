# Training: the toy base models from scratch, then per backbone the TensorAR runs and their
# equal-steps fine-tune control (same base, data, steps and lr_base, no plug-in). `final.pt` is the
# output (not the run folder), so a failed or preempted job keeps its checkpoints and resumes.


rule train_base:
    input:
        codes=train_codes_manifest,
    output:
        ckpt=f"{R}/runs/{{backbone}}/base/seed{{seed}}/final.pt",
        metrics=f"{R}/runs/{{backbone}}/base/seed{{seed}}/metrics.jsonl",
    params:
        codes=train_codes,
        run_dir=f"{R}/runs/{{backbone}}/base/seed{{seed}}",
        flags=train_base_flags,
        launcher=launcher,
    log:
        f"{R}/logs/train/{{backbone}}/base/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{backbone}}/base/seed{{seed}}.tsv"
    threads: stage_threads("train")
    resources:
        **stage_resources("train"),
    shell:
        "{params.launcher} -m tensorar.train --codes {params.codes} --run-dir {params.run_dir} --mode base "
        "{params.flags} --seed {wildcards.seed} > {log} 2>&1"


rule train:
    wildcard_constraints:
        method=r"finetune|tensorar-[A-Za-z0-9_]+",
    input:
        unpack(train_inputs),
    output:
        ckpt=f"{R}/runs/{{backbone}}/{{method}}/seed{{seed}}/final.pt",
        metrics=f"{R}/runs/{{backbone}}/{{method}}/seed{{seed}}/metrics.jsonl",
    params:
        codes=train_codes,
        run_dir=f"{R}/runs/{{backbone}}/{{method}}/seed{{seed}}",
        flags=train_flags,
        launcher=launcher,
    log:
        f"{R}/logs/train/{{backbone}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{backbone}}/{{method}}/seed{{seed}}.tsv"
    threads: stage_threads("train")
    resources:
        **stage_resources("train"),
    shell:
        "{params.launcher} -m tensorar.train --codes {params.codes} --run-dir {params.run_dir} "
        "{params.flags} --seed {wildcards.seed} > {log} 2>&1"

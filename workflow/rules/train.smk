# Training, one rule for every run: the toy base models from scratch (method base), and per backbone the
# TensorAR runs (tensorar-<variant>) and their equal-steps fine-tune control (finetune: same base, data,
# steps and lr_base, no plug-in). `final.pt` is the output (not the run folder), so a failed or
# preempted job keeps its checkpoints and resumes.


rule train:
    input:
        unpack(job_inputs("train", "backbone", "method", "seed")),
    output:
        ckpt=LAYOUT.run_file("{backbone}", "{method}", "{seed}", "final.pt"),
        metrics=LAYOUT.run_file("{backbone}", "{method}", "{seed}", "metrics.jsonl"),
    params:
        args=job_args("train", "backbone", "method", "seed"),
        launcher=launcher,
    log:
        LAYOUT.log("train", "{backbone}", "{method}", "seed{seed}"),
    benchmark:
        LAYOUT.benchmark("train", "{backbone}", "{method}", "seed{seed}")
    threads: stage_threads("train")
    resources:
        **stage_resources("train"),
    shell:
        "{params.launcher} -m tensorar.train {params.args} > {log:q} 2>&1"

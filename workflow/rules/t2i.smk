# Text-to-image (Tables 3-4): captioned data (the toy's canvases, or JSONL / tar shards from the config),
# caption conditions, prompt-file samples in GenEval's and DPG-Bench's layouts, the benchmark models'
# raw outputs (the toy detector here; the official models in their own environments), and the scores.
# Training and tokenizers are the shared rules (train.smk, tokenizer.smk).


rule make_captions:
    output:
        data=directory(LAYOUT.captions_root()),
    params:
        args=args(JOBS.make_captions_args()),
    log:
        LAYOUT.log("make_captions"),
    threads: stage_threads("make_captions")
    resources:
        **stage_resources("make_captions"),
    shell:
        "python -m tensorar.make_captions --out {output.data:q} {params.args} > {log:q} 2>&1"


rule encode_captions:
    input:
        codes=LAYOUT.codes_manifest("{tokenizer}", "{split}", "{size}"),
    output:
        conditions=LAYOUT.conditions_folder("{tokenizer}", "{split}", "{size}", "{encoder}") + "/conditions.json",
    params:
        args=job_args("encode_captions", "tokenizer", "split", "size", "encoder"),
        out=LAYOUT.conditions_folder("{tokenizer}", "{split}", "{size}", "{encoder}"),
    log:
        LAYOUT.log("encode_captions", "{tokenizer}", "{split}-{size}-{encoder}"),
    threads: stage_threads("encode_captions")
    resources:
        **stage_resources("encode_captions"),
    shell:
        "python -m tensorar.encode_captions {params.args} --out {params.out:q} > {log:q} 2>&1"


rule sample_prompts:
    input:
        unpack(job_inputs("sample_prompts", "benchmark", "backbone", "method", "seed")),
    output:
        stats=LAYOUT.bench_file("{benchmark}", "{backbone}", "{method}", "{seed}", "samples.json"),
    params:
        args=job_args("sample_prompts", "benchmark", "backbone", "method", "seed"),
        images=LAYOUT.bench_file("{benchmark}", "{backbone}", "{method}", "{seed}", "images"),
        launcher=launcher,
    log:
        LAYOUT.log("sample_prompts", "{benchmark}", "{backbone}", "{method}", "seed{seed}"),
    threads: stage_threads("sample_prompts")
    resources:
        **stage_resources("sample_prompts"),
    shell:
        "{params.launcher} -m tensorar.sample_prompts {params.args} --out {params.images:q} "
        "--stats-json {output.stats:q} > {log:q} 2>&1"


rule geneval_detect:
    # The official detector (Mask2Former + CLIP, mmdet 2.x) in its own environment; our scorer reads its file.
    input:
        samples=LAYOUT.bench_file("geneval", "{backbone}", "{method}", "{seed}", "samples.json"),
    output:
        raw=LAYOUT.bench_file("geneval", "{backbone}", "{method}", "{seed}", "raw.jsonl"),
    params:
        python=JOBS.benchmark_python("geneval"),
        args=detect_args("geneval"),
    conda:
        "../envs/geneval.yaml"
    log:
        LAYOUT.log("geneval_detect", "{backbone}", "{method}", "seed{seed}"),
    threads: stage_threads("benchmark_model")
    resources:
        **stage_resources("benchmark_model"),
    shell:
        "{params.python:q} workflow/scripts/geneval_detect.py {params.args} --out {output.raw:q} > {log:q} 2>&1"


rule dpg_vqa:
    # The official VQA model (mPLUG-large through modelscope) in its own environment.
    input:
        samples=LAYOUT.bench_file("dpg", "{backbone}", "{method}", "{seed}", "samples.json"),
    output:
        raw=LAYOUT.bench_file("dpg", "{backbone}", "{method}", "{seed}", "raw.jsonl"),
    params:
        python=JOBS.benchmark_python("dpg"),
        args=detect_args("dpg"),
    conda:
        "../envs/dpg.yaml"
    log:
        LAYOUT.log("dpg_vqa", "{backbone}", "{method}", "seed{seed}"),
    threads: stage_threads("benchmark_model")
    resources:
        **stage_resources("benchmark_model"),
    shell:
        "{params.python:q} workflow/scripts/dpg_vqa.py {params.args} --out {output.raw:q} > {log:q} 2>&1"


rule score_benchmark:
    input:
        unpack(job_inputs("score", "benchmark", "backbone", "method", "seed")),
    output:
        scores=report(
            LAYOUT.bench_file("{benchmark}", "{backbone}", "{method}", "{seed}", "scores.json"),
            category="Text-to-image scores",
            labels={"benchmark": "{benchmark}", "backbone": "{backbone}", "method": "{method}", "seed": "{seed}"},
        ),
    params:
        args=job_args("score", "benchmark", "backbone", "method", "seed"),
    log:
        LAYOUT.log("score_benchmark", "{benchmark}", "{backbone}", "{method}", "seed{seed}"),
    threads: stage_threads("score_benchmark")
    resources:
        **stage_resources("score_benchmark"),
    shell:
        "python -m tensorar.score_benchmark {params.args} --out {output.scores:q} > {log:q} 2>&1"

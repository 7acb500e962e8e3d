# Text-to-image (Tables 3-4): captioned data (the toy's canvases, or JSONL / tar shards from the config),
# caption conditions, prompt-file samples in GenEval's and DPG-Bench's layouts, the benchmark models'
# raw outputs (the toy detector here; the official models in their own environments), and the scores.
# Training and tokenizers are the shared rules (train.smk, tokenizer.smk).


rule make_captions:
    output:
        data=directory(PLAN.captions_root()),
    params:
        args=args(PLAN.make_captions_args()),
    log:
        f"{R}/logs/make_captions.log",
    threads: stage_threads("make_captions")
    resources:
        **stage_resources("make_captions"),
    shell:
        "python -m tensorar.make_captions --out {output.data:q} {params.args} > {log:q} 2>&1"


rule encode_captions:
    input:
        codes=PLAN.codes_manifest("{tokenizer}", "{split}", "{size}"),
    output:
        conditions=os.path.join(PLAN.conditions_folder("{tokenizer}", "{split}", "{size}", "{encoder}"), "conditions.json"),
    params:
        args=encode_captions_args,
        out=PLAN.conditions_folder("{tokenizer}", "{split}", "{size}", "{encoder}"),
    log:
        f"{R}/logs/encode_captions/{{tokenizer}}/{{split}}-{{size}}-{{encoder}}.log",
    threads: stage_threads("encode_captions")
    resources:
        **stage_resources("encode_captions"),
    shell:
        "python -m tensorar.encode_captions {params.args} --out {params.out:q} > {log:q} 2>&1"


rule sample_prompts:
    input:
        unpack(sample_prompts_inputs),
    output:
        stats=PLAN.bench_file("{benchmark}", "{backbone}", "{method}", "{seed}", "samples.json"),
    params:
        args=sample_prompts_args,
        images=PLAN.bench_file("{benchmark}", "{backbone}", "{method}", "{seed}", "images"),
        launcher=launcher,
    log:
        f"{R}/logs/sample_prompts/{{benchmark}}/{{backbone}}/{{method}}/seed{{seed}}.log",
    threads: stage_threads("sample_prompts")
    resources:
        **stage_resources("sample_prompts"),
    shell:
        "{params.launcher} -m tensorar.sample_prompts {params.args} --out {params.images:q} "
        "--stats-json {output.stats:q} > {log:q} 2>&1"


rule geneval_detect:
    # The official detector (Mask2Former + CLIP, mmdet 2.x) in its own environment; our scorer reads its file.
    input:
        samples=PLAN.bench_file("geneval", "{backbone}", "{method}", "{seed}", "samples.json"),
    output:
        raw=PLAN.bench_file("geneval", "{backbone}", "{method}", "{seed}", "raw.jsonl"),
    params:
        python=PLAN.benchmark_python("geneval"),
        args=geneval_detect_args,
    conda:
        "../envs/geneval.yaml"
    log:
        f"{R}/logs/geneval_detect/{{backbone}}/{{method}}/seed{{seed}}.log",
    threads: stage_threads("benchmark_model")
    resources:
        **stage_resources("benchmark_model"),
    shell:
        "{params.python:q} workflow/scripts/geneval_detect.py {params.args} --out {output.raw:q} > {log:q} 2>&1"


rule dpg_vqa:
    # The official VQA model (mPLUG-large through modelscope) in its own environment.
    input:
        samples=PLAN.bench_file("dpg", "{backbone}", "{method}", "{seed}", "samples.json"),
    output:
        raw=PLAN.bench_file("dpg", "{backbone}", "{method}", "{seed}", "raw.jsonl"),
    params:
        python=PLAN.benchmark_python("dpg"),
        args=dpg_vqa_args,
    conda:
        "../envs/dpg.yaml"
    log:
        f"{R}/logs/dpg_vqa/{{backbone}}/{{method}}/seed{{seed}}.log",
    threads: stage_threads("benchmark_model")
    resources:
        **stage_resources("benchmark_model"),
    shell:
        "{params.python:q} workflow/scripts/dpg_vqa.py {params.args} --out {output.raw:q} > {log:q} 2>&1"


rule score_benchmark:
    input:
        unpack(score_inputs),
    output:
        scores=report(
            PLAN.bench_file("{benchmark}", "{backbone}", "{method}", "{seed}", "scores.json"),
            category="Text-to-image scores",
            labels={"benchmark": "{benchmark}", "backbone": "{backbone}", "method": "{method}", "seed": "{seed}"},
        ),
    params:
        args=score_args,
    log:
        f"{R}/logs/score_benchmark/{{benchmark}}/{{backbone}}/{{method}}/seed{{seed}}.log",
    threads: stage_threads("score_benchmark")
    resources:
        **stage_resources("score_benchmark"),
    shell:
        "python -m tensorar.score_benchmark {params.args} --out {output.scores:q} > {log:q} 2>&1"

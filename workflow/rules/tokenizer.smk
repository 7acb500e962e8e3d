# Image tokenizers: trained here for the toy, released files (config paths) at paper scale; then every
# image split becomes a grid of token codes per tokenizer at each image size a backbone uses.


rule train_tokenizer:
    input:
        unpack(train_tokenizer_inputs),
    output:
        tokenizer=f"{R}/tokenizers/{{tokenizer}}.pt",
        report=f"{R}/tokenizers/{{tokenizer}}.json",
    params:
        args=train_tokenizer_args,
    log:
        f"{R}/logs/train_tokenizer/{{tokenizer}}.log",
    benchmark:
        f"{R}/benchmarks/train_tokenizer/{{tokenizer}}.tsv"
    threads: stage_threads("train_tokenizer")
    resources:
        **stage_resources("train_tokenizer"),
    shell:
        "python -m tensorar.train_tokenizer {params.args} --out {output.tokenizer:q} > {log:q} 2>&1"


rule extract_codes:
    input:
        unpack(extract_codes_inputs),
    output:
        manifest=PLAN.codes_manifest("{tokenizer}", "{split}", "{size}"),
    params:
        args=extract_codes_args,
        out=PLAN.codes_dir("{tokenizer}", "{split}", "{size}"),
        launcher=launcher,
    log:
        f"{R}/logs/extract_codes/{{tokenizer}}/{{split}}-{{size}}.log",
    benchmark:
        f"{R}/benchmarks/extract_codes/{{tokenizer}}/{{split}}-{{size}}.tsv"
    threads: stage_threads("extract_codes")
    resources:
        **stage_resources("extract_codes"),
    shell:
        "{params.launcher} -m tensorar.extract_codes {params.args} --out {params.out:q} > {log:q} 2>&1"

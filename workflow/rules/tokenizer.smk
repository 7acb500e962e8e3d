# Image tokenizers: trained here for the toy, released files (config paths) at paper scale; then every
# image split becomes a grid of token codes per tokenizer at each image size a backbone uses.


rule train_tokenizer:
    input:
        unpack(job_inputs("images", "tokenizer")),
    output:
        tokenizer=LAYOUT.trained_tokenizer("{tokenizer}"),
        report=LAYOUT.tokenizer_report("{tokenizer}"),
    params:
        args=job_args("train_tokenizer", "tokenizer"),
    log:
        LAYOUT.log("train_tokenizer", "{tokenizer}"),
    benchmark:
        LAYOUT.benchmark("train_tokenizer", "{tokenizer}")
    threads: stage_threads("train_tokenizer")
    resources:
        **stage_resources("train_tokenizer"),
    shell:
        "python -m tensorar.train_tokenizer {params.args} --out {output.tokenizer:q} > {log:q} 2>&1"


rule extract_codes:
    input:
        unpack(job_inputs("extract_codes", "tokenizer")),
    output:
        manifest=LAYOUT.codes_manifest("{tokenizer}", "{split}", "{size}"),
    params:
        args=job_args("extract_codes", "tokenizer", "split", "size"),
        out=LAYOUT.codes_dir("{tokenizer}", "{split}", "{size}"),
        launcher=launcher,
    log:
        LAYOUT.log("extract_codes", "{tokenizer}", "{split}-{size}"),
    benchmark:
        LAYOUT.benchmark("extract_codes", "{tokenizer}", "{split}-{size}")
    threads: stage_threads("extract_codes")
    resources:
        **stage_resources("extract_codes"),
    shell:
        "{params.launcher} -m tensorar.extract_codes {params.args} --out {params.out:q} > {log:q} 2>&1"

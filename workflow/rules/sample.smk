# Sampling: N class-conditional images per (backbone, method, seed, checkpoint) into an ADM .npz,
# with the backbone's LlamaGen sampling settings; a PNG grid and the sampler's timing beside it.


rule sample:
    input:
        unpack(sample_inputs),
    output:
        samples=f"{R}/samples/{{backbone}}/{{method}}/seed{{seed}}/{{tag}}.npz",
        stats=f"{R}/samples/{{backbone}}/{{method}}/seed{{seed}}/{{tag}}.json",
        grid=f"{R}/samples/{{backbone}}/{{method}}/seed{{seed}}/{{tag}}.png",
    params:
        flags=sample_flags,
        launcher=launcher,
    log:
        f"{R}/logs/sample/{{backbone}}/{{method}}/seed{{seed}}/{{tag}}.log",
    benchmark:
        f"{R}/benchmarks/sample/{{backbone}}/{{method}}/seed{{seed}}/{{tag}}.tsv"
    threads: stage_threads("sample")
    resources:
        **stage_resources("sample"),
    shell:
        "{params.launcher} -m tensorar.sample {params.flags} --out {output.samples} "
        "--stats-json {output.stats} --grid-png {output.grid} > {log} 2>&1"

# Sampling: N class-conditional images per (backbone, method, seed, checkpoint) into an ADM .npz, with
# the backbone's sampling settings; a PNG grid and the sampler's stats beside it. TensorAR runs also get
# a refinement strip of a few samples of their own (paper Fig. 8/10).


rule sample:
    input:
        unpack(sample_inputs),
    output:
        samples=PLAN.sample("{backbone}", "{method}", "{seed}", "{tag}"),
        stats=PLAN.sample("{backbone}", "{method}", "{seed}", "{tag}", "json"),
        grid=report(
            PLAN.sample("{backbone}", "{method}", "{seed}", "{tag}", "png"),
            category="Samples",
            subcategory="{backbone}",
            labels={"backbone": "{backbone}", "method": "{method}", "seed": "{seed}", "checkpoint": "{tag}"},
        ),
    params:
        args=sample_args,
        launcher=launcher,
    log:
        f"{R}/logs/sample/{{backbone}}/{{method}}/seed{{seed}}/{{tag}}.log",
    benchmark:
        f"{R}/benchmarks/sample/{{backbone}}/{{method}}/seed{{seed}}/{{tag}}.tsv"
    threads: stage_threads("sample")
    resources:
        **stage_resources("sample"),
    shell:
        "{params.launcher} -m tensorar.sample {params.args} --out {output.samples:q} "
        "--stats-json {output.stats:q} --grid-png {output.grid:q} > {log:q} 2>&1"


# Latency and throughput (Table 6b, Fig. 4, claims 5-6) of the first seed's model, in a job that holds
# resources.time_sampling: give it more threads than the machine has (Snakemake then runs it alone) or,
# on Slurm, a whole node (slurm_extra: --exclusive). Jobs that share cores measure the contention.


rule time_sampling:
    input:
        unpack(timing_inputs),
    output:
        timing=PLAN.timing("{backbone}", "{method}"),
    params:
        args=timing_args,
    log:
        f"{R}/logs/time_sampling/{{backbone}}/{{method}}.log",
    threads: stage_threads("time_sampling")
    resources:
        **stage_resources("time_sampling"),
    shell:
        "python -m tensorar.time_sampling {params.args} --threads {threads} --out {output.timing:q} > {log:q} 2>&1"


rule drafts:
    wildcard_constraints:
        method=r"tensorar-[A-Za-z0-9_]+",
    input:
        unpack(drafts_inputs),
    output:
        samples=PLAN.drafts("{backbone}", "{method}", "{seed}", "npz"),
        strip=report(
            PLAN.drafts("{backbone}", "{method}", "{seed}"),
            category="Refinement strips",
            labels={"backbone": "{backbone}", "method": "{method}", "seed": "{seed}"},
        ),
    params:
        args=drafts_args,
    log:
        f"{R}/logs/drafts/{{backbone}}/{{method}}/seed{{seed}}.log",
    threads: stage_threads("sample")
    resources:
        **stage_resources("sample"),
    shell:
        "python -m tensorar.sample {params.args} --out {output.samples:q} --drafts-png {output.strip:q} "
        "> {log:q} 2>&1"

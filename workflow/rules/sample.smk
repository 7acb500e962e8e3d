# Sampling: N class-conditional images per (backbone, method, seed, checkpoint) into an ADM .npz, with
# the backbone's sampling settings; a PNG grid and the sampler's stats beside it. TensorAR runs also get
# a refinement strip of a few samples of their own (paper Fig. 8/10).


rule sample:
    input:
        unpack(job_inputs("sample", "backbone", "method", "seed", "tag")),
    output:
        samples=LAYOUT.sample("{backbone}", "{method}", "{seed}", "{tag}"),
        stats=LAYOUT.sample("{backbone}", "{method}", "{seed}", "{tag}", "json"),
        grid=report(
            LAYOUT.sample("{backbone}", "{method}", "{seed}", "{tag}", "png"),
            category="Samples",
            subcategory="{backbone}",
            labels={"backbone": "{backbone}", "method": "{method}", "seed": "{seed}", "checkpoint": "{tag}"},
        ),
    params:
        args=job_args("sample", "backbone", "method", "seed", "tag"),
        launcher=launcher,
    log:
        LAYOUT.log("sample", "{backbone}", "{method}", "seed{seed}", "{tag}"),
    benchmark:
        LAYOUT.benchmark("sample", "{backbone}", "{method}", "seed{seed}", "{tag}")
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
        unpack(job_inputs("timing", "backbone", "method")),
    output:
        timing=LAYOUT.timing("{backbone}", "{method}"),
    params:
        args=job_args("timing", "backbone", "method"),
    log:
        LAYOUT.log("time_sampling", "{backbone}", "{method}"),
    threads: stage_threads("time_sampling")
    resources:
        **stage_resources("time_sampling"),
    shell:
        "python -m tensorar.time_sampling {params.args} --threads {threads} --out {output.timing:q} > {log:q} 2>&1"


rule drafts:
    wildcard_constraints:
        method=r"tensorar-[A-Za-z0-9_]+",
    input:
        unpack(job_inputs("sample", "backbone", "method", "seed")),
    output:
        samples=LAYOUT.drafts("{backbone}", "{method}", "{seed}", "npz"),
        strip=report(
            LAYOUT.drafts("{backbone}", "{method}", "{seed}"),
            category="Refinement strips",
            labels={"backbone": "{backbone}", "method": "{method}", "seed": "{seed}"},
        ),
    params:
        args=job_args("drafts", "backbone", "method", "seed"),
    log:
        LAYOUT.log("drafts", "{backbone}", "{method}", "seed{seed}"),
    threads: stage_threads("sample")
    resources:
        **stage_resources("sample"),
    shell:
        "python -m tensorar.sample {params.args} --out {output.samples:q} --drafts-png {output.strip:q} "
        "> {log:q} 2>&1"

# Tables and figures: `tensorar tables` reads a JSON manifest from the plan (which metrics file is which
# row) and writes Markdown + CSV (or PNG). The manifest is a param, so adding a row re-makes its table.
# Every output is in the HTML report (snakemake --report results/report.html), grouped by table.


rule table:
    input:
        table_inputs,
    output:
        md="results/{table}.md",
        csv=report("results/{table}.csv", category="{table}", caption="../report/table.rst"),
    params:
        manifest=table_manifest,
    log:
        f"{R}/logs/tables/{{table}}.log",
    threads: stage_threads("tables")
    resources:
        **stage_resources("tables"),
    shell:
        "python -m tensorar.tables table --manifest {params.manifest:q} --out {output.md:q} > {log:q} 2>&1"


rule diagnostics:
    input:
        manifest_inputs(PLAN.diagnostics_manifest()),
    output:
        md="results/diagnostics.md",
        csv=report("results/diagnostics.csv", category="Diagnostics", caption="../report/diagnostics.rst"),
    params:
        manifest=json.dumps(PLAN.diagnostics_manifest()),
    log:
        f"{R}/logs/tables/diagnostics.log",
    threads: stage_threads("tables")
    resources:
        **stage_resources("tables"),
    shell:
        "python -m tensorar.tables diagnostics --manifest {params.manifest:q} --out {output.md:q} > {log:q} 2>&1"


rule figures:
    input:
        manifest_inputs(PLAN.figures_manifest()),
    output:
        **{name: report(path, category="Figures", caption="../report/figures.rst") for name, path in PLAN.figures().items()},
    params:
        manifest=json.dumps(PLAN.figures_manifest()),
    log:
        f"{R}/logs/tables/figures.log",
    threads: stage_threads("tables")
    resources:
        **stage_resources("tables"),
    shell:
        "python -m tensorar.tables figures --manifest {params.manifest:q} > {log:q} 2>&1"


rule claims:
    input:
        manifest_inputs(PLAN.claims_manifest()),
    output:
        md="results/claims.md",
        json="results/claims.json",
        plot=report("results/claims.png", category="Claims", caption="../report/claims.rst"),
    params:
        manifest=json.dumps(PLAN.claims_manifest()),
    log:
        f"{R}/logs/tables/claims.log",
    threads: stage_threads("tables")
    resources:
        **stage_resources("tables"),
    shell:
        "python -m tensorar.tables claims --manifest {params.manifest:q} --out {output.md:q} > {log:q} 2>&1"

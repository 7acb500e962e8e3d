# Tables and figures: `tensorar tables` reads a JSON manifest from the plan (which metrics file is which
# row) and writes Markdown + CSV (or PNG). The manifest is a param, so adding a row re-makes its table.
# Every output is in the HTML report (snakemake --report results/report.html), grouped by table.


rule table:
    input:
        table_inputs,
    output:
        md=LAYOUT.table("{table}"),
        csv=report(LAYOUT.table("{table}", "csv"), category="{table}", caption="../report/table.rst"),
    params:
        manifest=table_manifest,
    log:
        LAYOUT.log("tables", "{table}"),
    threads: stage_threads("tables")
    resources:
        **stage_resources("tables"),
    shell:
        "python -m tensorar.tables table --manifest {params.manifest:q} --out {output.md:q} > {log:q} 2>&1"


rule diagnostics:
    input:
        manifest_inputs(MANIFESTS.diagnostics_manifest()),
    output:
        md=LAYOUT.table("diagnostics"),
        csv=report(LAYOUT.table("diagnostics", "csv"), category="Diagnostics", caption="../report/diagnostics.rst"),
    params:
        manifest=json.dumps(MANIFESTS.diagnostics_manifest()),
    log:
        LAYOUT.log("tables", "diagnostics"),
    threads: stage_threads("tables")
    resources:
        **stage_resources("tables"),
    shell:
        "python -m tensorar.tables diagnostics --manifest {params.manifest:q} --out {output.md:q} > {log:q} 2>&1"


rule figures:
    input:
        manifest_inputs(MANIFESTS.figures_manifest()),
    output:
        **{name: report(path, category="Figures", caption="../report/figures.rst") for name, path in LAYOUT.figures().items()},
    params:
        manifest=json.dumps(MANIFESTS.figures_manifest()),
    log:
        LAYOUT.log("tables", "figures"),
    threads: stage_threads("tables")
    resources:
        **stage_resources("tables"),
    shell:
        "python -m tensorar.tables figures --manifest {params.manifest:q} > {log:q} 2>&1"


rule claims:
    input:
        manifest_inputs(PLAN.claims_manifest()),
    output:
        md=LAYOUT.table("claims"),
        json=LAYOUT.table("claims", "json"),
        plot=report(LAYOUT.table("claims", "png"), category="Claims", caption="../report/claims.rst"),
    params:
        manifest=json.dumps(PLAN.claims_manifest()),
    log:
        LAYOUT.log("tables", "claims"),
    threads: stage_threads("tables")
    resources:
        **stage_resources("tables"),
    shell:
        "python -m tensorar.tables claims --manifest {params.manifest:q} --out {output.md:q} > {log:q} 2>&1"

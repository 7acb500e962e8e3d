# Tables and figures: `tensorar.tables` reads a JSON manifest (which metrics file is which row) and
# writes Markdown + CSV (or PNG). The manifest is a param, so adding a row re-makes its table.


rule table:
    input:
        table_files,
    output:
        md="results/{table}.md",
        csv="results/{table}.csv",
    params:
        manifest=table_manifest_param,
    log:
        f"{R}/logs/tables/{{table}}.log",
    threads: stage_threads("tables")
    resources:
        **stage_resources("tables"),
    shell:
        "python -m tensorar.tables table --manifest {params.manifest:q} --out {output.md} > {log} 2>&1"


rule diagnostics:
    input:
        diagnostics_inputs(),
    output:
        md="results/diagnostics.md",
        csv="results/diagnostics.csv",
    params:
        manifest=diagnostics_manifest(),
    log:
        f"{R}/logs/tables/diagnostics.log",
    threads: stage_threads("tables")
    resources:
        **stage_resources("tables"),
    shell:
        "python -m tensorar.tables diagnostics --manifest {params.manifest:q} --out {output.md} > {log} 2>&1"


rule figures:
    input:
        figures_inputs(),
    output:
        **FIGURES,
    params:
        manifest=figures_manifest(),
    log:
        f"{R}/logs/tables/figures.log",
    threads: stage_threads("tables")
    resources:
        **stage_resources("tables"),
    shell:
        "python -m tensorar.tables figures --manifest {params.manifest:q} > {log} 2>&1"

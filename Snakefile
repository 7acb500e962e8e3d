# TensorAR reproduction workflow.
#
#   snakemake --cores all                                  embedded toy: every table at toy scale (CPU)
#   snakemake --profile slurm results/table2.md            paper scale on Slurm (slurm/config.yaml)
#   snakemake -n --configfile config/paper.yaml --replace-workflow-config    dry run of the paper
#   snakemake --report results/report.html                 every table, figure and sample grid in one page
#
# Rules live in workflow/rules/ (one file per stage, helpers in common.smk); what runs and with which
# arguments is the tensorar.plan package
# (src/tensorar/plan/). Config keys are documented in config/README.md and checked against
# workflow/schemas/config.schema.yaml.


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/t2i.smk"
include: "workflow/rules/tables.smk"


rule all:
    default_target: True
    input:
        LAYOUT.targets(),


onsuccess:
    print(done_message())

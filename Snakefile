# TensorAR reproduction workflow.
#
#   snakemake --cores all                                  embedded toy: every table at toy scale (CPU)
#   snakemake --profile slurm results/table2.md            paper scale on Slurm (slurm/config.yaml)
#   snakemake -n --configfile config/paper.yaml --replace-workflow-config    dry run of the paper
#
# Rules live in workflow/rules/ (one file per stage, helpers in common.smk); config keys are
# documented in config/README.md and checked against workflow/schemas/config.schema.yaml.


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"


rule all:
    default_target: True
    input:
        all_targets(),


onsuccess:
    print(done_message())

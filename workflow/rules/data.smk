# Datasets and reference batches. ImageNet is an external folder (config paths); only the toy digits
# dataset is materialised here.


rule make_digits:
    output:
        data=directory(f"{R}/data/digits"),
    params:
        image_size=config["dataset"].get("image_size", 16),
        val_fraction=config["dataset"].get("val_fraction", 0.2),
        seed=config["dataset"].get("split_seed", 0),
    log:
        f"{R}/logs/make_digits.log",
    threads: stage_threads("make_digits")
    resources:
        **stage_resources("make_digits"),
    shell:
        "python -m tensorar.make_digits --out {output.data} --image-size {params.image_size} "
        "--val-fraction {params.val_fraction} --seed {params.seed} > {log} 2>&1"


rule make_reference:
    input:
        **dataset_inputs(),
    output:
        ref=f"{R}/reference/{{split}}-{{size}}.npz",
    params:
        data=split_data,
        flags=reference_flags,
    log:
        f"{R}/logs/make_reference/{{split}}-{{size}}.log",
    threads: stage_threads("make_reference")
    resources:
        **stage_resources("make_reference"),
    shell:
        "python -m tensorar.make_reference --data {params.data} --out {output.ref} "
        "--image-size {wildcards.size} {params.flags} > {log} 2>&1"

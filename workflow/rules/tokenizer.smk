# Image tokenizer: trained here for the toy, LlamaGen's vq_ds16_c2i.pt (a config path) at paper scale;
# then every image split becomes a grid of token codes at each image size a backbone uses.


rule train_vq:
    input:
        **dataset_inputs(),
    output:
        vq=f"{R}/tokenizer/vq.pt",
        report=f"{R}/tokenizer/vq.json",
    params:
        train=dataset_dir("train"),
        val=dataset_dir("val"),
        preset=config["tokenizer"]["preset"],
        image_size=config["dataset"].get("image_size", 16),
        steps=config["tokenizer"].get("training", {}).get("steps", 400),
        batch_size=config["tokenizer"].get("training", {}).get("batch_size", 32),
        lr=config["tokenizer"].get("training", {}).get("lr", 0.002),
    log:
        f"{R}/logs/train_vq.log",
    benchmark:
        f"{R}/benchmarks/train_vq.tsv"
    threads: stage_threads("train_vq")
    resources:
        **stage_resources("train_vq"),
    shell:
        "python -m tensorar.train_vq --data {params.train} --val-data {params.val} --out {output.vq} "
        "--preset {params.preset} --image-size {params.image_size} --steps {params.steps} "
        "--batch-size {params.batch_size} --lr {params.lr} > {log} 2>&1"


rule extract_codes:
    input:
        unpack(extract_codes_inputs),
    output:
        manifest=f"{R}/codes/{{split}}-{{size}}/manifest.json",
    params:
        data=split_data,
        out=f"{R}/codes/{{split}}-{{size}}",
        vq=vq_flags(),
        augment=extract_codes_flags,
        launcher=launcher,
    log:
        f"{R}/logs/extract_codes/{{split}}-{{size}}.log",
    benchmark:
        f"{R}/benchmarks/extract_codes/{{split}}-{{size}}.tsv"
    threads: stage_threads("extract_codes")
    resources:
        **stage_resources("extract_codes"),
    shell:
        "{params.launcher} -m tensorar.extract_codes --data {params.data} {params.vq} --out {params.out} "
        "--image-size {wildcards.size} {params.augment} > {log} 2>&1"

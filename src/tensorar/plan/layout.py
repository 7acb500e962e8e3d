"""Where every file of an experiment lives. Called with wildcard names ("{backbone}") the methods give the
rules' patterns, so a path is spelled once, here.

Layout (R = results/<experiment>):
    R/data/digits/                                    toy dataset (make_digits)
    R/data/captions/{train,val,geneval,dpg}/          toy captioned canvases and prompt sets (make_captions)
    R/tokenizers/<tokenizer>.pt                       toy tokenizer (train_tokenizer; + .json report)
    R/codes/<tokenizer>/<split>-<size>/manifest.json  token codes (extract_codes)
    R/codes/<tokenizer>/<split>-<size>/conditions-<encoder>/   caption features / prompts (encode_captions)
    R/runs/<backbone>/<method>/seed<s>/final.pt       method = base | finetune[-x<N>] | tensorar-<variant>[-x<N>]
                                                      (-x<N>: N times the fine-tuning steps; ours, claims.md)
    R/samples/<backbone>/<method>/seed<s>/<tag>.npz   tag = final | final_draftnoise | step<N> (+ .json, .png)
    R/samples/<backbone>/<method>/seed<s>/drafts.png  TensorAR refinement strip (+ drafts.npz)
    R/metrics/<backbone>/<method>/seed<s>/<tag>.json
    R/diagnostics/<backbone>/tensorar-<variant>/seed<s>.json
    R/bench/<benchmark>/<backbone>/<method>/seed<s>/  images/ (sample_prompts), raw.jsonl, scores.json
    R/timing/<backbone>/<method>.json                 latency / throughput in a job that holds every core
    R/logs/<stage>/...log, R/benchmarks/<stage>/...tsv   every job's log and Snakemake benchmark
    results/table{2..6}.md (+ .csv), results/diagnostics.md, results/claims.md, results/figures/*.png
Released inputs (ImageNet, official checkpoints and prompt sets) are config paths, returned as given.
"""
from __future__ import annotations

from tensorar.data.codes import MANIFEST
from tensorar.plan.experiment import Experiment

FIGURES = {
    "fig2": "results/figures/fig2_size_fid.png",
    "fig4": "results/figures/fig4_throughput_fid.png",
    "fig5": "results/figures/fig5_training_fid.png",
    "grid": "results/figures/samples_table2.png",
}
TABLES = ("table2", "table3", "table4", "table5", "table6")
CLAIMS = "results/claims.md"


class Layout:
    def __init__(self, experiment: Experiment):
        self.experiment = experiment
        self.root = f"results/{experiment.name}"

    # ----- job bookkeeping -----
    def log(self, *parts) -> str:
        """A job's log: log("train", backbone, method, f"seed{seed}") -> R/logs/train/<b>/<m>/seed<s>.log."""
        return f"{self.root}/logs/{'/'.join(map(str, parts))}.log"

    def benchmark(self, *parts) -> str:
        """A job's Snakemake benchmark (wall time, memory), laid out as its log."""
        return f"{self.root}/benchmarks/{'/'.join(map(str, parts))}.tsv"

    # ----- data -----
    def dataset_dir(self, split: str) -> str:
        """ImageFolder of a split: materialised digits, or the configured ImageNet folder."""
        dataset = self.experiment.dataset
        return f"{self.digits_dir()}/{split}" if dataset.name == "digits" else getattr(dataset, f"{split}_dir")

    def digits_dir(self) -> str:
        return f"{self.root}/data/digits"

    def captions_root(self) -> str:
        return f"{self.root}/data/captions"

    def captions_dir(self, split: str) -> str:
        """A captioned split: the toy's canvases (made here) or the configured JSONL / tar shards."""
        captions = self.experiment.captions
        if captions.name == "captioned_digits":
            return f"{self.captions_root()}/{split}"
        if not getattr(captions, split):
            raise ValueError(f"captions.{split} is required when captions.name is files")
        return getattr(captions, split)

    def images_of(self, tokenizer: str, split: str) -> str:
        """The images a tokenizer is trained on / makes codes of: class folders or a captioned set."""
        if self.experiment.tokenizers[tokenizer].data == "captions":
            return self.captions_dir(split)
        return self.dataset_dir(split)

    # ----- tokenizers, codes, conditions -----
    def tokenizer_path(self, name: str) -> str:
        """The tokenizer a backbone's codes are made with: a released file, or one trained here."""
        return self.experiment.tokenizers[name].checkpoint or self.trained_tokenizer(name)

    def trained_tokenizer(self, name: str) -> str:
        return f"{self.root}/tokenizers/{name}.pt"

    def tokenizer_report(self, name: str) -> str:
        return f"{self.root}/tokenizers/{name}.json"

    def codes_dir(self, tokenizer: str, split: str, size) -> str:
        return f"{self.root}/codes/{tokenizer}/{split}-{size}"

    def codes_manifest(self, tokenizer: str, split: str, size) -> str:
        return f"{self.codes_dir(tokenizer, split, size)}/{MANIFEST}"

    def backbone_codes(self, backbone: str, split: str) -> str:
        spec = self.experiment.backbones[backbone]
        return self.codes_dir(spec.tokenizer, split, spec.image_size)

    def backbone_codes_manifest(self, backbone: str, split: str) -> str:
        return f"{self.backbone_codes(backbone, split)}/{MANIFEST}"

    def conditions_folder(self, tokenizer, split, size, encoder) -> str:
        return f"{self.codes_dir(tokenizer, split, size)}/conditions-{encoder}"

    def conditions_dir(self, backbone: str, split: str) -> str | None:
        """A text backbone's stored conditions (tensorar encode_captions); None for class labels."""
        spec = self.experiment.backbones[backbone]
        if not spec.text_encoder:
            return None
        return self.conditions_folder(spec.tokenizer, split, spec.image_size, spec.text_encoder)

    # ----- runs, samples, metrics -----
    def run_dir(self, backbone, method, seed) -> str:
        return f"{self.root}/runs/{backbone}/{method}/seed{seed}"

    def run_file(self, backbone, method, seed, name: str) -> str:
        """A training job's outputs: final.pt, metrics.jsonl."""
        return f"{self.run_dir(backbone, method, seed)}/{name}"

    def base_checkpoint(self, backbone: str, seed) -> str:
        """The base model of a backbone: an official checkpoint (config path) or our trained one."""
        return self.experiment.backbones[backbone].checkpoint or self.run_file(backbone, "base", seed, "final.pt")

    def checkpoint(self, backbone, method, seed, tag="final") -> str:
        """The checkpoint a sample batch is drawn from."""
        if method == "base":
            return self.base_checkpoint(backbone, seed)
        if tag.startswith("step"):
            return f"{self.run_dir(backbone, method, seed)}/checkpoints/step_{int(tag[4:]):07d}.pt"
        return self.run_file(backbone, method, seed, "final.pt")

    def sample(self, backbone, method, seed, tag="final", ext="npz") -> str:
        return f"{self.root}/samples/{backbone}/{method}/seed{seed}/{tag}.{ext}"

    def drafts(self, backbone, method, seed, ext="png") -> str:
        return f"{self.root}/samples/{backbone}/{method}/seed{seed}/drafts.{ext}"

    def metrics(self, backbone, method, seed, tag="final") -> str:
        return f"{self.root}/metrics/{backbone}/{method}/seed{seed}/{tag}.json"

    def diagnostics(self, backbone, variant, seed) -> str:
        return f"{self.root}/diagnostics/{backbone}/tensorar-{variant}/seed{seed}.json"

    def timing(self, backbone, method) -> str:
        return f"{self.root}/timing/{backbone}/{method}.json"

    # ----- evaluation -----
    def reference(self, backbone: str) -> str:
        ev, size = self.experiment.evaluation, self.experiment.backbones[backbone].eval_image_size
        return ev.reference or self.built_reference(ev.reference_split, size)

    def built_reference(self, split, size) -> str:
        return f"{self.root}/reference/{split}-{size}.npz"

    def classifier(self) -> str:
        return f"{self.root}/features/classifier.pt"

    def classifier_report(self) -> str:
        return f"{self.root}/features/classifier.json"

    # ----- Tables 3-4 -----
    def bench_dir(self, benchmark, backbone, method, seed) -> str:
        return f"{self.root}/bench/{benchmark}/{backbone}/{method}/seed{seed}"

    def bench_file(self, benchmark, backbone, method, seed, name: str) -> str:
        """A run's benchmark files: images/ (sample_prompts), samples.json, raw.jsonl, scores.json."""
        return f"{self.bench_dir(benchmark, backbone, method, seed)}/{name}"

    def benchmark_prompts(self, name: str) -> str:
        """The official prompt set (config path) or the toy's (made by make_captions)."""
        given = self.experiment.benchmarks[name].prompts
        if given:
            return given
        return f"{self.captions_root()}/geneval/evaluation_metadata.jsonl" if name == "geneval" else \
            f"{self.captions_root()}/dpg/prompts"

    def dpg_questions(self) -> str:
        return self.experiment.benchmarks["dpg"].questions or f"{self.captions_root()}/dpg/dpg_bench.csv"

    # ----- the workflow's products -----
    def table(self, name: str, ext: str = "md") -> str:
        return f"results/{name}.{ext}"

    def figures(self) -> dict[str, str]:
        return dict(FIGURES)

    def targets(self) -> list[str]:
        """What `snakemake --cores all` makes: every table, the diagnostics, claims.md, the figures and a
        refinement strip of each Table 2 TensorAR model (first seed)."""
        variant = f"tensorar-{self.experiment.tables.table2.variant}"
        strips = [self.drafts(b, variant, self.experiment.seeds[0]) for b in self.experiment.run_backbones()]
        return [*(self.table(t) for t in TABLES), self.table("diagnostics"), CLAIMS, *FIGURES.values(), *strips]

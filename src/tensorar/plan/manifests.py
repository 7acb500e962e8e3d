"""The manifests the tables, diagnostics and figures are rendered from: JSON-ready data saying which
metrics / sampler-stats / timing / diagnose file makes which row (`tensorar tables` renders them; what each
table holds is `tensorar.reporting.tables`'s business). `manifest_inputs` lists a manifest's files, the
inputs of the rule that renders it."""
from __future__ import annotations

from dataclasses import asdict
from functools import partial

from tensorar.plan.experiment import Experiment
from tensorar.plan.layout import FIGURES, Layout
from tensorar.reporting import tables


class Manifests:
    def __init__(self, experiment: Experiment, layout: Layout):
        self.experiment, self.layout = experiment, layout

    def provenance(self) -> dict:
        e = self.experiment
        feature = ("Inception-v3 (ADM protocol)" if e.evaluation.features == "inception"
                   else "toy-FID: digits classifier features, not comparable with Inception FID")
        return {"config_hash": e.config_hash, "experiment": e.name, "dataset": e.dataset.name,
                "feature_network": feature, "seeds": list(e.seeds), "num_samples": e.evaluation.num_samples}

    # ----- the per-seed files of one row -----
    def runs(self, backbone, method, tag="final", timed=False) -> list[dict]:
        """Per-seed files of a run: metrics, sampler stats and, `timed`, the timing job's (first seed)."""
        if method == "tensorar":  # Table 2's variant
            method = f"tensorar-{self.experiment.tables.table2.variant}"
        runs = [{"seed": s, "metrics": self.layout.metrics(backbone, method, s, tag),
                 "stats": self.layout.sample(backbone, method, s, tag, "json")} for s in self.experiment.seeds]
        if timed and tag == "final" and (backbone, method) in self.experiment.timed_runs():
            runs[0]["timing"], runs[0]["timed_model"] = self.layout.timing(backbone), method
        return runs

    def bench_runs(self, benchmark, backbone, method) -> list[dict]:
        if method == "tensorar":
            table = self.experiment.tables.table3 if benchmark == "geneval" else self.experiment.tables.table4
            method = f"tensorar-{table.variant}"
        return [{"seed": s, "metrics": self.layout.bench_file(benchmark, backbone, method, s, "scores.json"),
                 "stats": self.layout.bench_file(benchmark, backbone, method, s, "samples.json")}
                for s in self.experiment.seeds]

    # ----- tables -----
    def _row_backbone(self, key: str, **extra) -> dict:
        spec = self.experiment.backbones[key]
        return {"key": key, "label": spec.label, **extra, "paper_row": spec.paper_row, "pending": spec.pending}

    def table2_sections(self, timed: bool = False) -> list[dict]:
        e = self.experiment
        backbones = [self._row_backbone(b, resolution=e.backbones[b].image_size if e.backbones[b].official_base
                                        else e.backbones[b].eval_image_size) for b in e.tables.table2.backbones]
        return tables.table2_sections(backbones, e.variant_label(e.tables.table2.variant),
                                      partial(self.runs, timed=timed), e.toy)

    def table_manifest(self, name: str) -> dict:
        """The rows of results/<name>.md, for `tensorar tables table`."""
        e = self.experiment
        if name == "table2":
            backbones = list(e.tables.table2.backbones)
            sections = self.table2_sections()
        elif name in ("table3", "table4"):
            benchmark, table = ("geneval", e.tables.table3) if name == "table3" else ("dpg", e.tables.table4)
            backbones = list(table.backbones)
            runs = lambda b, m, tag="final": self.bench_runs(benchmark, b, m)  # noqa: E731
            sections = tables.benchmark_sections(name, [self._row_backbone(b) for b in table.backbones],
                                                 e.variant_label(table.variant), runs, e.toy,
                                                 subsets=benchmark == "geneval" and e.prompts_made_here(benchmark))
        elif name in ("table5", "table6"):
            # Only Table 6b's latency column waits for the timing jobs.
            sections, backbones = [], []
            for t in ("table5",) if name == "table5" else ("table6a", "table6b"):
                ablation = getattr(e.tables, t)
                backbones.append(ablation.backbone)
                spec = e.backbones[ablation.backbone]
                backbone = {"key": ablation.backbone, "label": spec.label, "paper_row": spec.paper_row}
                variants = {v: asdict(e.variants[v]) for v in ablation.variants}
                sections.append(tables.ablation_section(t, backbone, variants, e.variant_label,
                                                        partial(self.runs, timed=t == "table6b"), e.toy))
        else:
            raise ValueError(f"unknown table {name!r}")
        titles = [s["title"].split(": ", 1)[1] for s in sections if s["name"] != "table2_other"]
        provenance = self.provenance()
        # Which sampling protocol made the rows: protocol -> its backbones (tensorar.plan.inputs.SamplingProtocol)
        protocols: dict[str, list[str]] = {}
        for b in dict.fromkeys(backbones):
            protocols.setdefault(e.backbones[b].sampling_protocol.label(), []).append(b)
        provenance["sampling_protocol"] = protocols
        if name in ("table3", "table4"):  # not the class-to-image sample count
            bench = e.benchmarks["geneval" if name == "table3" else "dpg"]
            provenance["samples"] = (f"samples per model: {bench.images_per_prompt} images per prompt of the "
                                     f"{'toy ' if e.toy else ''}{'GenEval' if name == 'table3' else 'DPG-Bench'} prompts")
        return {"title": f"Table {name[5:]}: " + "; ".join(titles), "provenance": provenance, "sections": sections}

    # ----- diagnostics, figures -----
    def diagnostics_manifest(self) -> dict:
        """Diagnose JSON of every TensorAR run, plus the draft-noise sampling row of each Table 2 backbone."""
        e = self.experiment
        rows = [{"backbone": b, "variant": v,
                 "label": f"{e.backbones[b].label} with TensorAR ({e.variant_label(v)})",
                 "runs": [{"seed": s, "diagnostics": self.layout.diagnostics(b, v, s)} for s in e.seeds]}
                for b, v in e.tensorar_runs()]
        variant = e.tables.table2.variant
        draft_noise = [{"label": f"{e.backbones[b].label} with TensorAR ({e.variant_label(variant)}), "
                                 "draft_noise: schedule (ours, not the paper's)",
                        "reference": self.runs(b, "tensorar"), "runs": self.runs(b, "tensorar", "final_draftnoise")}
                       for b in e.run_backbones()]
        return {"provenance": self.provenance(), "diagnostics": rows, "draft_noise": draft_noise}

    def figures_manifest(self) -> dict:
        """Fig. 2 (size vs FID) and Fig. 4 (throughput vs FID) from the Table 2 rows, Fig. 5 from the kept
        training checkpoints, and a grid of samples of every Table 2 run."""
        e = self.experiment
        fig5 = e.tables.fig5
        curves = {}
        for method, label in (("finetune", "fine-tune control"), (f"tensorar-{fig5.variant}", "TensorAR")):
            points = [{"step": s, "runs": self.runs(fig5.backbone, method, f"step{s}")} for s in fig5.steps]
            points.append({"step": e.backbones[fig5.backbone].finetuning.steps, "runs": self.runs(fig5.backbone, method)})
            curves[label] = points
        table2 = self.table2_sections(timed=True)[0]["rows"]  # Fig. 4's throughput: the timing jobs
        grids = [{"label": f"{row['cells']['Model']} {row['method']}",
                  "png": [r["stats"].removesuffix(".json") + ".png" for r in row["runs"]]}
                 for row in table2 if "runs" in row]
        return {"provenance": self.provenance(), "table2": table2,
                "fig5": {"backbone": e.backbones[fig5.backbone].label, "curves": curves}, "grids": grids,
                "outputs": dict(FIGURES)}


def manifest_inputs(manifest) -> list[str]:
    """Every file a manifest names (metrics, stats, diagnostics, PNG grids): the rule's inputs."""
    found: list[str] = []

    def walk(node, key=None):
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in ("outputs", "provenance"):
                    walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in ("metrics", "stats", "diagnostics", "png", "timing"):
            found.append(node)

    walk(manifest)
    return list(dict.fromkeys(found))

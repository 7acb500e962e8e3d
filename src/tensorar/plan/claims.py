"""The claims manifest (results/claims.md): which comparison decides which of the paper's claims, with the
per-seed files of both arms. The claims' texts and readings are `tensorar.reporting.claims`'s; the
statistics are `tensorar tables claims`'s."""
from __future__ import annotations

from tensorar.plan.manifests import Manifests
from tensorar.reporting import claims as reporting_claims

FID = {"kind": "paired", "metric": "fid", "unit": "FID"}


def paired(name, a, b, side="less", **extra) -> dict:
    return {**FID, "label": name, "a": a, "b": b, "side": side, **extra}


def claims_manifest(manifests: Manifests) -> dict:
    e, runs, layout = manifests.experiment, manifests.runs, manifests.layout
    label = lambda b: e.backbones[b].label  # noqa: E731
    table2 = f"tensorar-{e.tables.table2.variant}"
    backbones = e.run_backbones()

    def timing(name, a, b, side, null, relative):
        return {"kind": "timing", "label": name, "a": {"timing": layout.timing(*a)}, "b": {"timing": layout.timing(*b)},
                "side": side, "null": null, "relative": relative, "unit": "%" if relative else "s"}

    claims = {
        "1": [paired(f"{label(b)}: TensorAR - base", runs(b, table2), runs(b, "base")) for b in backbones],
        "1b": [{"kind": "overhead", "label": label(b), "stats": runs(b, table2)[0]["stats"], "range": [1.5, 4.6]}
               for b in backbones],
        "2": [paired(f"{label(b)}: control - base", runs(b, "finetune"), runs(b, "base"), "greater")
              for b in backbones]
        + [paired(f"2b {label(b)}: TensorAR - control", runs(b, table2), runs(b, "finetune")) for b in backbones],
    }
    t5 = e.tables.table5
    schedules = {v: runs(t5.backbone, f"tensorar-{v}") for v in t5.variants}
    best = [v for v in t5.variants if e.variants[v].schedule == "exponential"]
    claims["3"] = [paired(f"{e.variants[v].schedule} - base", arm, runs(t5.backbone, "base"))
                   for v, arm in schedules.items()]
    claims["3"] += [paired(f"exponential - {e.variants[v].schedule}", schedules[best[0]], arm)
                    for v, arm in schedules.items() if best and v != best[0]]
    t6a = e.tables.table6a
    by_k = sorted(t6a.variants, key=lambda v: e.variants[v].k)
    claims["4"] = [{**FID, "kind": "trend", "label": f"{label(t6a.backbone)}: k = "
                    + ", ".join(str(e.variants[v].k) for v in by_k), "direction": "decreasing",
                    "arms": [{"label": f"k={e.variants[v].k}", "runs": runs(t6a.backbone, f"tensorar-{v}")}
                             for v in by_k]}]
    t6b = e.tables.table6b
    by_depth = sorted(t6b.variants, key=lambda v: e.variants[v].depth)
    depth = lambda v: e.variants[v].depth  # noqa: E731
    claims["5"] = [paired(f"d={depth(by_depth[0])} - d={depth(v)}", runs(t6b.backbone, f"tensorar-{by_depth[0]}"),
                          runs(t6b.backbone, f"tensorar-{v}")) for v in by_depth[1:]]
    claims["5"] += [timing(f"latency d={depth(after)} - d={depth(before)}", (t6b.backbone, f"tensorar-{after}"),
                           (t6b.backbone, f"tensorar-{before}"), "greater", 0.0, False)
                    for before, after in zip(by_depth, by_depth[1:])]
    claims["6"] = [timing(f"{label(b)}: latency TensorAR / base - 1", (b, table2), (b, "base"), "less",
                          e.claims.modest_latency, True) for b in backbones]
    claims["7"] = [{"kind": "paired", "metric": "overall", "unit": "score", "side": "greater",
                    "label": f"{label(b)}, {'GenEval' if bench == 'geneval' else 'DPG-Bench'}: TensorAR - base",
                    "a": manifests.bench_runs(bench, b, "tensorar"), "b": manifests.bench_runs(bench, b, "base")}
                   for bench, table in (("geneval", "table3"), ("dpg", "table4")) for b in e.text_backbones(table)]
    claims.update(_ours(manifests, table2))
    return {"title": "Which of the paper's claims hold", "provenance": manifests.provenance(),
            "settings": e.claims.statistics(),
            "note": "toy scale: a verdict here is about the toy, not about the paper's scale" if e.toy else None,
            "claims": [{"id": i, "claim": reporting_claims.CLAIMS[i][0], "reading": reporting_claims.CLAIMS[i][1],
                        "tests": tests} for i, tests in claims.items() if tests]}


def _ours(manifests: Manifests, table2: str) -> dict:
    """Our comparisons (not the paper's): draft noise at sampling, our variants, longer fine-tuning."""
    e, runs = manifests.experiment, manifests.runs
    label = lambda b: e.backbones[b].label  # noqa: E731
    claims = {"ours-a": [paired(f"{label(b)}: draft noise - control", runs(b, table2, "final_draftnoise"),
                                runs(b, "finetune")) for b in e.run_backbones()]}
    claims["ours-a"] += [paired(f"{label(b)}: draft noise - TensorAR", runs(b, table2, "final_draftnoise"),
                                runs(b, table2), in_verdict=False) for b in e.run_backbones()]
    ours = e.claims.ours
    if ours.variants:
        b = ours.backbone
        claims["ours-b"] = [paired(f"{label(b)}: {v} - control", runs(b, f"tensorar-{v}"), runs(b, "finetune"))
                            for v in ours.variants]
        claims["ours-b"] += [paired(f"{label(b)}: {v} - TensorAR", runs(b, f"tensorar-{v}"), runs(b, table2),
                                    in_verdict=False) for v in ours.variants]
    if e.longer_methods():
        control, longer = e.longer_methods()
        claims["ours-c"] = [paired(f"{label(ours.backbone)}: TensorAR - control, {longer.rsplit('-', 1)[1]} steps",
                                   runs(ours.backbone, longer), runs(ours.backbone, control))]
    return claims

"""results/claims.md: which of the paper's claims this run supports, each with its interval and a verdict.

The experiment plan (`tensorar.plan.Plan.claims_manifest`) lists the claims and, for each, the tests that
decide it: which metrics / timing / sampler-stats files are compared how. This module evaluates the tests
(`tensorar.evaluation.statistics`) and writes the report (Markdown, JSON and a forest plot of the FID
differences). A test is one of:

    paired    mean over seeds of metric(A) - metric(B), arms paired by seed; interval: two-level bootstrap
              (seeds, and each run's sample-bootstrap replicates when its metrics file carries them), with
              the classical paired t interval beside it as a cross-check when there are >= 2 seeds
    trend     consecutive paired differences of ordered arms (e.g. k = 2, 4, 8), `monotonic_trend`
    timing    latency of A against B from the dedicated timing jobs' repeats (`timing_difference`),
              absolute (s / image) or relative, against a threshold (`null`)
    overhead  the plug-in's parameter overhead (%) from the sampler's stats, against a range; exact,
              no interval

Verdicts (statistics.verdict): "supported" when the interval lies strictly on the claimed side,
"contradicted" when strictly on the other, else "inconclusive"; with >= 2 seeds a paired test needs the
bootstrap and the paired t interval to agree (a percentile bootstrap over 2-3 seeds has only a handful of
distinct resamples and under-covers), else it is inconclusive. A claim is supported when all its tests
are, contradicted when one is. A one-seed run without bootstrap replicates has no interval: its tests
say "inconclusive (no interval)". Tests marked `in_verdict: false` are shown but decide nothing.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from tensorar.evaluation.statistics import (
    ArmResults,
    consecutive_differences,
    monotonic_trend,
    paired_difference,
    paired_t_interval,
    timing_difference,
    verdict,
)
from tensorar.fileio import atomic_path, atomic_write_text, read_finite_json
from tensorar.reporting.tables import provenance_lines, read_json

NO_INTERVAL = "inconclusive (no interval)"

# What the paper claims, and how this report reads it where the text allows more than one reading
# (docs/method.md, "Claims"). Keys are the claim ids of the plan's manifest.
CLAIMS = {
    "1": ("TensorAR improves every backbone's FID (Table 2)",
          "FID(+TensorAR) - FID(base) < 0 for every Table 2 backbone, paired by seed."),
    "1b": ("with a parameter overhead of 1.5-4.6% (Table 2)",
           "the sampler's parameter count of the TensorAR model over its backbone's. The plug-in's size is "
           "about 12·D² per query-transformer layer plus k-dependent embeddings, so a narrow toy backbone "
           "(small D, small vocabulary) can fall outside the paper's range: that is a property of the scale."),
    "2": ("fine-tuning the base for the same steps without the plug-in does not improve FID (Fig. 5)",
          "the literal reading: FID(control) - FID(base) is not below 0 (supported when the control is "
          "worse, inconclusive when the interval contains 0). 2b, ours: TensorAR beats that control, i.e. "
          "its gain is not the extra steps."),
    "3": ("all four schedules beat the baseline, and exponential is best (Table 5)",
          "FID(schedule) - FID(base) < 0 for each schedule, and FID(exponential) - FID(other) < 0 for each "
          "other schedule."),
    "4": ("FID decreases monotonically with k (Table 6a)",
          "every step to the next larger k lowers FID (paired consecutive differences < 0); the variants "
          "of Table 6a only (k = 1 is the base model, trained differently)."),
    "5": ("d = 1 is best, and deeper query transformers cost latency (Table 6b: 0.11 s base, 0.12 / 0.14 / "
          "0.15 s)",
          "FID(d=1) - FID(d) < 0 for every deeper d, and latency increases with each step in depth "
          "(dedicated timing jobs; the spread is that of the repeats)."),
    "6": ("throughput drops only modestly (Fig. 4; Table 6b latency +9%)",
          "ours: 'modestly' read as TensorAR's latency per image (generation + decoding) at most "
          "claims.modest_latency above its base's, per Table 2 backbone."),
    "7": ("text-to-image: GenEval and DPG-Bench overall improve for both backbones (Tables 3-4)",
          "overall(+TensorAR) - overall(base) > 0 for every text-to-image backbone and benchmark."),
    "ours-a": ("ours: drafts re-noised at sampling (draft_noise: schedule) beat the equal-steps control",
               "FID(TensorAR, draft noise) - FID(control) < 0; beside it, against TensorAR as the paper "
               "samples it (not in the verdict)."),
    "ours-b": ("ours: self-drafting training beats the equal-steps control",
               "FID(self-drafting TensorAR) - FID(control) < 0; beside it, against the paper's noised "
               "drafts (not in the verdict)."),
    "ours-c": ("ours: with longer fine-tuning, TensorAR beats a control fine-tuned as long",
               "FID(TensorAR, N x steps) - FID(control, N x steps) < 0."),
}


# --------------------------------------------------------------------------------------------------
# Reading the arms
# --------------------------------------------------------------------------------------------------
def metric_of(record: dict, metric: str) -> tuple[float, list[float] | None]:
    """(value, sample-bootstrap replicates or None) of a metrics file: ADM's METRICS.json (`fid`,
    `fid_bootstrap`) or a benchmark's scores.json (`scores.overall`, `overall_bootstrap`)."""
    if metric == "fid":
        return float(record["fid"]), (record.get("fid_bootstrap") or {}).get("replicates")
    return float(record["scores"][metric]), (record.get("overall_bootstrap") or {}).get("replicates")


def arm(runs: list[dict], metric: str) -> ArmResults:
    """One arm from its per-seed runs; replicates are kept only when every seed has the same number."""
    values = [metric_of(read_finite_json(r["metrics"]), metric) for r in runs]  # NaN: an error naming the run
    replicates = [v[1] for v in values]
    same = all(r is not None for r in replicates) and len({len(r) for r in replicates}) == 1
    return ArmResults(tuple(r["seed"] for r in runs), np.array([v[0] for v in values]),
                      np.array(replicates) if same else None)


def paired_arms(a: list[dict], b: list[dict], metric: str) -> tuple[ArmResults, ArmResults]:
    left, right = arm(a, metric), arm(b, metric)
    if (left.replicates is None) != (right.replicates is None):  # compare like with like
        left, right = ArmResults(left.seeds, left.fids), ArmResults(right.seeds, right.fids)
    return left, right


def latencies(path: str) -> list[float]:
    """Seconds per image of each timed repeat (tensorar time_sampling)."""
    return list(read_json(path)["latency_s"]["values"])


# --------------------------------------------------------------------------------------------------
# Evaluating tests
# --------------------------------------------------------------------------------------------------
def _rng(settings: dict, label: str) -> np.random.Generator:
    # One stream per test, keyed by its label: adding a claim does not move another claim's interval.
    return np.random.default_rng([settings["seed"], zlib.crc32(label.encode())])


def has_interval(arms: list[ArmResults]) -> bool:
    """One seed without sample-bootstrap replicates leaves nothing to resample."""
    return len(arms[0].seeds) >= 2 or arms[0].replicates is not None


def evaluate_test(test: dict, settings: dict) -> dict:
    """A test of the manifest -> {label, kind, intervals, verdict, ...} (JSON-ready)."""
    level, n_boot, rng = settings["level"], settings["bootstrap"], _rng(settings, test["label"])
    out = {"label": test["label"], "kind": test["kind"], "in_verdict": test.get("in_verdict", True),
           "unit": test.get("unit", "")}
    if test["kind"] == "paired":
        a, b = paired_arms(test["a"], test["b"], test["metric"])
        found = paired_difference(a, b, n_boot, rng, level) if has_interval([a]) else None
        out["side"], out["null"] = test["side"], 0.0
        out["interval"] = found.to_dict() if found else {"estimate": float(np.mean(a.fids - b.fids))}
        out["a_mean"], out["b_mean"] = float(a.fids.mean()), float(b.fids.mean())
        out["verdict"] = verdict(found, test["side"]) if found else NO_INTERVAL
        if len(a.seeds) >= 2:  # few seeds: the bootstrap under-covers, so the t interval must agree
            check = paired_t_interval(a, b, level)
            out["paired_t"] = check.to_dict()
            if verdict(check, test["side"]) != out["verdict"]:
                out["verdict"] = "inconclusive"
    elif test["kind"] == "trend":
        arms = [arm(step["runs"], test["metric"]) for step in test["arms"]]
        if len({a.replicates is None for a in arms}) > 1:
            arms = [ArmResults(a.seeds, a.fids) for a in arms]
        steps = consecutive_differences(arms, n_boot, rng, level) if has_interval(arms) else None
        out["direction"] = test["direction"]
        out["means"] = {step["label"]: float(a.fids.mean()) for step, a in zip(test["arms"], arms)}
        out["steps"] = [s.to_dict() for s in steps] if steps else []
        out["verdict"] = monotonic_trend(steps, test["direction"]) if steps else NO_INTERVAL
    elif test["kind"] == "timing":
        found = timing_difference(latencies(test["a"]["timing"]), latencies(test["b"]["timing"]), n_boot, rng, level,
                                  relative=test["relative"])
        out["side"], out["null"], out["relative"] = test["side"], test["null"], test["relative"]
        out["interval"] = found.to_dict()
        out["verdict"] = verdict(found, test["side"], test["null"])
    elif test["kind"] == "overhead":
        model = read_json(test["stats"])["model"]
        percent = 100.0 * (model["parameters"] - model["base_parameters"]) / model["base_parameters"]
        low, high = test["range"]
        out["estimate"], out["range"] = percent, [low, high]
        out["verdict"] = "supported" if low <= percent <= high else "contradicted"
    else:
        raise ValueError(f"unknown test kind {test['kind']!r}")
    return out


def combine(verdicts: list[str]) -> str:
    """A claim's verdict from its tests': contradicted if any is, supported if all are."""
    if not verdicts:
        return "inconclusive"
    if "contradicted" in verdicts:
        return "contradicted"
    if all(v == "supported" for v in verdicts):
        return "supported"
    return NO_INTERVAL if all(v == NO_INTERVAL for v in verdicts) else "inconclusive"


def evaluate_claims(manifest: dict) -> list[dict]:
    settings = manifest["settings"]
    results = []
    for claim in manifest["claims"]:
        tests = [evaluate_test(t, settings) for t in claim["tests"]]
        results.append({**{k: v for k, v in claim.items() if k != "tests"}, "tests": tests,
                        "verdict": combine([t["verdict"] for t in tests if t["in_verdict"]])})
    return results


# --------------------------------------------------------------------------------------------------
# Writing the report
# --------------------------------------------------------------------------------------------------
def _number(value: float, unit: str) -> str:
    if unit == "%":
        return f"{100 * value:+.1f}%"
    if unit == "s":
        return f"{1000 * value:+.2f} ms"
    return f"{value:+.3f}" if abs(value) < 1 else f"{value:+.2f}"


def measured(test: dict) -> str:
    """One test's measurement as a table cell: estimate [low, high] (method, seeds)."""
    unit = test["unit"]
    if test["kind"] == "overhead":
        return f"{test['estimate']:.2f}% (paper's range {test['range'][0]}-{test['range'][1]}%)"
    if test["kind"] == "trend":
        means = ", ".join(f"{k} {v:.2f}" for k, v in test["means"].items())
        steps = "; ".join(f"{_number(s['estimate'], unit)} [{_number(s['low'], unit)}, {_number(s['high'], unit)}]"
                          for s in test["steps"])
        return f"{means}; steps: {steps or 'no interval'}"
    found = test["interval"]
    if "low" not in found:
        return f"{_number(found['estimate'], unit)} (no interval: one seed, no bootstrap replicates)"
    text = (f"{_number(found['estimate'], unit)} [{_number(found['low'], unit)}, {_number(found['high'], unit)}] "
            f"({found['method']}, {found['n_seeds']} seed{'s' if found['n_seeds'] > 1 else ''})")
    if test["kind"] == "timing" and test["null"]:
        text += f"; threshold {_number(test['null'], unit)}"
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(manifest: dict, results: list[dict]) -> str:
    settings, prov = manifest["settings"], manifest["provenance"]
    lines = [f"# {manifest['title']}", "", *provenance_lines(prov),
             f"- intervals: {settings['level']:.0%}, {settings['bootstrap']} bootstrap draws (seed "
             f"{settings['seed']}); FID intervals also carry each run's sample bootstrap when its metrics "
             "file has replicates (tensorar.evaluation.statistics)",
             "- verdict: supported / contradicted when the interval lies strictly on one side of the claim's "
             "threshold, inconclusive when it touches it; a claim is supported when all its tests are"]
    if manifest.get("note"):
        lines.append(f"- {manifest['note']}")
    lines += ["", "| # | The paper claims | Measured here | Verdict |", "|---|---|---|---|"]
    for claim in results:
        cells = "<br>".join(f"{t['label']}: {measured(t)}" + ("" if t["in_verdict"] else " (not in the verdict)")
                            for t in claim["tests"])
        lines.append(f"| {claim['id']} | {_cell(claim['claim'])} | {_cell(cells)} | **{claim['verdict']}** |")
    lines += ["", "## Per test", "",
              "| # | Test | Claimed side | Estimate [interval] | Paired t (cross-check) | Verdict |",
              "|---|---|---|---|---|---|"]
    for claim in results:
        for t in claim["tests"]:
            side = {"less": "<", "greater": ">"}.get(t.get("side") or "", "")
            if t["kind"] == "trend":
                side = t["direction"]
            elif t["kind"] == "overhead":
                side = "in range"
            else:
                side = f"{side} {_number(t['null'], t['unit']) if t['null'] else 0}"
            check = t.get("paired_t")
            check = f"{_number(check['estimate'], t['unit'])} [{_number(check['low'], t['unit'])}, " \
                    f"{_number(check['high'], t['unit'])}]" if check else "-"
            lines.append(f"| {claim['id']} | {_cell(t['label'])} | {side} | {_cell(measured(t))} | {check} | "
                         f"{t['verdict']} |")
    readings = [f"- **{c['id']}**: {c['reading']}" for c in results if c.get("reading")]
    if readings:
        lines += ["", "## Readings", "", *readings]
    return "\n".join(lines) + "\n"


def forest_plot(results: list[dict], out: Path) -> None:
    """Every paired FID difference with its interval, one row each (0 = no difference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{c['id']}: {t['label']}", t["interval"]) for c in results for t in c["tests"]
            if t["kind"] == "paired" and t["unit"] == "FID"]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    for y, (label, found) in enumerate(reversed(rows)):
        if "low" in found:
            ax.plot([found["low"], found["high"]], [y, y], "-", color="tab:blue")
        ax.plot([found["estimate"]], [y], "o", color="tab:blue")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)], fontsize=7)
    ax.set_xlabel("FID difference (A - B; below 0: A better)")
    ax.set_title("Paired FID differences with their intervals")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def write_claims(manifest: dict, out: Path) -> None:
    """claims.md, claims.json (every interval) and claims.png (forest plot) from a claims manifest."""
    results = evaluate_claims(manifest)
    atomic_write_text(out, render(manifest, results))
    atomic_write_text(out.with_suffix(".json"), json.dumps({"settings": manifest["settings"], "claims": results},
                                                           indent=2))
    forest_plot(results, out.with_suffix(".png"))

"""results/claims.md: which of the paper's claims this run supports, each with its interval and a verdict,
and a verdict only where the test is valid (`tensorar.reporting.gates`).

The experiment plan (`tensorar.plan`) lists the claims and, for each, the tests that decide it: which
metrics / timing / sampler-stats files are compared how. This module evaluates the tests
(`tensorar.evaluation.statistics`, `tensorar.evaluation.timing`) and writes the report (Markdown, JSON
and a forest plot of the FID differences). A test is one of:

    paired    mean over seeds of metric(A) - metric(B), arms paired by seed; interval: two-level bootstrap
              (seeds, and each run's sample-bootstrap replicates when its metrics file carries them; replicate
              j of both arms drawn together when they resampled the same sample indices), with the classical
              paired t interval beside it as a cross-check when there are >= 2 seeds. `floor` (text-to-image):
              the base must beat the shuffled-caption floor first
    trend     consecutive paired differences of ordered arms (e.g. k = 2, 4, 8), each step with its paired t
              cross-check as a paired test has
    timing    latency of A against B from one interleaved timing job (`time_sampling`): the median of the
              per-round ratios (or differences) with a bootstrap over rounds, against a threshold (`null`),
              valid only with enough rounds and a passing A/A check (base vs control)
    overhead  the plug-in's parameter overhead (%) from a sampler's stats or from counts in the manifest
              (the paper's presets, counted on the meta device), against a range; exact, no interval;
              `toy: true` marks a toy row, shown but n/a (a toy's width is not the method's)

Verdicts (statistics.verdict): "supported" when the interval lies strictly on the claimed side,
"contradicted" when strictly on the other, else "inconclusive"; with >= 2 seeds a paired test (and each
step of a trend) needs the bootstrap and the paired t interval to agree (a percentile bootstrap over 2-3
seeds has only a handful of distinct resamples and under-covers), else it is inconclusive. Before that the
gates decide whether a verdict may be given at all: one seed -> "indicative (sampling noise only)", broken
timing -> "measurement invalid", a text-to-image base at its floor -> "not testable", each with its reason.
A claim is supported when all its tests are, contradicted when one is (`gates.combine`). Tests marked
`in_verdict: false` are shown but decide nothing.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from tensorar.evaluation.statistics import (
    ArmResults,
    consecutive_differences,
    consecutive_t_intervals,
    paired_difference,
    paired_t_interval,
    trend_verdict,
    verdict,
)
from tensorar.evaluation.floor import shuffled_caption_overall
from tensorar.evaluation.timing import aa_check, paired_timing
from tensorar.fileio import atomic_path, atomic_write_text, read_finite_json
from tensorar.reporting.gates import (
    INDICATIVE,
    INVALID,
    NO_INTERVAL,
    NOT_TESTABLE,
    VERDICTS,
    Gates,
    aa_reason,
    combine,
    floor_reason,
    seeds_reason,
    timing_reason,
)
from tensorar.reporting.tables import provenance_lines, read_json

TOY_OVERHEAD = "n/a (toy scale)"

# --------------------------------------------------------------------------------------------------
# Reading the arms
# --------------------------------------------------------------------------------------------------
def metric_of(record: dict, metric: str) -> tuple[float, list[float] | None, tuple | None]:
    """(value, sample-bootstrap replicates or None, what the replicates resampled) of a metrics file: ADM's
    METRICS.json (`fid`, `fid_bootstrap`) or a benchmark's scores.json (`scores.overall`,
    `overall_bootstrap`). Two files with the same (bootstrap seed, sample count) resampled the same sample
    indices in replicate j."""
    if metric == "fid":
        boot = record.get("fid_bootstrap") or {}
        value, count = float(record["fid"]), boot.get("n_samples")
    else:
        boot = record.get("overall_bootstrap") or {}
        value, count = float(record["scores"][metric]), record.get("num_images")
    key = (boot["seed"], count) if "seed" in boot and count is not None else None
    return value, boot.get("replicates"), key


def arm(runs: list[dict], metric: str) -> tuple[ArmResults, list]:
    """One arm from its per-seed runs, and each seed's resampling key; replicates are kept only when every
    seed has the same number."""
    values = [metric_of(read_finite_json(r["metrics"]), metric) for r in runs]  # NaN: an error naming the run
    replicates = [v[1] for v in values]
    same = all(r is not None for r in replicates) and len({len(r) for r in replicates}) == 1
    return (ArmResults(tuple(r["seed"] for r in runs), np.array([v[0] for v in values]),
                       np.array(replicates) if same else None), [v[2] for v in values])


def like_arms(arms: list[tuple[ArmResults, list]]) -> tuple[list[ArmResults], bool]:
    """Arms compared like with like (replicates dropped everywhere unless every arm has them), and whether
    their replicates are paired: every arm's seed s resampled the same sample indices."""
    found = [a for a, _ in arms]
    if len({a.replicates is None for a in found}) > 1:
        return [ArmResults(a.seeds, a.fids) for a in found], False
    keys = [k for _, k in arms]
    paired = found[0].replicates is not None and all(None not in k for k in keys) and all(k == keys[0] for k in keys)
    return found, paired


def _rng(settings: dict, label: str) -> np.random.Generator:
    # One stream per test, keyed by its label: adding a claim does not move another claim's interval.
    return np.random.default_rng([settings["seed"], zlib.crc32(label.encode())])


def has_interval(arms: list[ArmResults]) -> bool:
    """One seed without sample-bootstrap replicates leaves nothing to resample."""
    return len(arms[0].seeds) >= 2 or arms[0].replicates is not None


def _gate(out: dict, reason: str | None, status: str) -> None:
    """Replace a test's verdict by `status` when a gate gives a reason; keep what the interval said."""
    if reason:
        out["interval_reading"], out["verdict"], out["reason"] = out["verdict"], status, reason


def floor_score(floor: dict) -> float | None:
    """The shuffled-caption floor of a text-to-image test: from a floor's scores file (`metrics`), or
    (`shuffled_seed`, GenEval) the base's own detections judged against other prompts, averaged over its
    seeds; None when neither is given (no floor measured)."""
    if floor.get("metrics"):
        return float(read_finite_json(floor["metrics"])["scores"]["overall"])
    if floor.get("shuffled_seed") is not None:
        return float(np.mean([shuffled_caption_overall(read_json(run["metrics"])["raw"], floor["shuffled_seed"])
                              for run in floor["base"]]))
    return None


def _paired(test: dict, settings: dict, gates: Gates, out: dict) -> None:
    level, n_boot, rng = settings["level"], settings["bootstrap"], _rng(settings, test["label"])
    (a, b), paired_reps = like_arms([arm(test["a"], test["metric"]), arm(test["b"], test["metric"])])
    found = paired_difference(a, b, n_boot, rng, level, paired_reps) if has_interval([a]) else None
    out.update(side=test["side"], null=0.0, paired_replicates=paired_reps,
               interval=found.to_dict() if found else {"estimate": float(np.mean(a.fids - b.fids))},
               a_mean=float(a.fids.mean()), b_mean=float(b.fids.mean()),
               verdict=verdict(found, test["side"]) if found else NO_INTERVAL)
    if len(a.seeds) >= 2:  # few seeds: the bootstrap under-covers, so the t interval must agree
        check = paired_t_interval(a, b, level)
        out["paired_t"] = check.to_dict()
        if verdict(check, test["side"]) != out["verdict"]:
            out["verdict"] = "inconclusive"
    if "floor" in test:
        floor = test["floor"]
        base, _ = arm(floor["base"], test["metric"])
        score = floor_score(floor)
        out["floor"] = {"score": score, "base": float(base.fids.mean()), "full_scale": floor["full_scale"]}
        reason = floor_reason(float(base.fids.mean()), score, floor["full_scale"], gates)
        if reason:
            return _gate(out, reason, NOT_TESTABLE)
    if found:
        _gate(out, seeds_reason(len(a.seeds), gates), INDICATIVE)


def _trend(test: dict, settings: dict, gates: Gates, out: dict) -> None:
    level, n_boot, rng = settings["level"], settings["bootstrap"], _rng(settings, test["label"])
    arms, paired_reps = like_arms([arm(step["runs"], test["metric"]) for step in test["arms"]])
    side = "less" if test["direction"] == "decreasing" else "greater"
    steps = consecutive_differences(arms, n_boot, rng, level, paired_reps) if has_interval(arms) else None
    out.update(direction=test["direction"], paired_replicates=paired_reps,
               means={step["label"]: float(a.fids.mean()) for step, a in zip(test["arms"], arms)},
               steps=[s.to_dict() for s in steps] if steps else [])
    if not steps:
        out["verdict"] = NO_INTERVAL
        return
    step_verdicts = [verdict(s, side) for s in steps]
    if len(arms[0].seeds) >= 2:  # each step's t interval must agree, as for a paired test
        checks = consecutive_t_intervals(arms, level)
        out["paired_t_steps"] = [c.to_dict() for c in checks]
        step_verdicts = [v if verdict(c, side) == v else "inconclusive" for v, c in zip(step_verdicts, checks)]
    out["step_verdicts"] = step_verdicts
    out["verdict"] = trend_verdict(step_verdicts)
    _gate(out, seeds_reason(len(arms[0].seeds), gates), INDICATIVE)


def latencies(record: dict, model: str) -> list[float]:
    """Seconds per image of each timed round of one model of a TIMING.json (tensorar time_sampling)."""
    return list(record["models"][model]["latency_s"]["values"])


def _timing(test: dict, settings: dict, gates: Gates, out: dict) -> None:
    level, n_boot, rng = settings["level"], settings["bootstrap"], _rng(settings, test["label"])
    record = read_finite_json(test["timing"])
    out.update(side=test["side"], null=test["null"], relative=test["relative"])
    aa_pair = tuple(test["aa"]) if test.get("aa") else None
    reason = timing_reason(record, (test["a"], test["b"]), aa_pair, gates)
    if reason is None:
        aa = paired_timing(latencies(record, aa_pair[0]), latencies(record, aa_pair[1]), n_boot, rng, level)
        passed = aa_check(aa, gates.aa_tolerance)
        out["aa"] = {"pair": list(aa_pair), "tolerance": gates.aa_tolerance, "interval": aa.to_dict(), "passed": passed}
        reason = aa_reason(aa_pair, passed, gates)
    if "models" in record and test["a"] in record["models"] and test["b"] in record["models"]:
        found = paired_timing(latencies(record, test["a"]), latencies(record, test["b"]), n_boot, rng, level,
                              relative=test["relative"])
        out["interval"], out["verdict"] = found.to_dict(), verdict(found, test["side"], test["null"])
    else:
        out["interval"], out["verdict"] = {"estimate": float("nan")}, "inconclusive"
    _gate(out, reason, INVALID)


def _overhead(test: dict, out: dict) -> None:
    counts = read_json(test["stats"])["model"] if "stats" in test else test
    percent = 100.0 * (counts["parameters"] - counts["base_parameters"]) / counts["base_parameters"]
    low, high = test["range"]
    out.update(estimate=percent, range=[low, high], paper=test.get("paper"))
    out["verdict"] = "supported" if low <= percent <= high else "contradicted"
    if test.get("toy"):
        _gate(out, "a toy backbone's overhead measures its width (the plug-in is ~12·D² per query-transformer "
                   "layer), not the method: claim 1b is decided at the paper's presets", TOY_OVERHEAD)


def evaluate_test(test: dict, settings: dict) -> dict:
    """A test of the manifest -> {label, kind, intervals, verdict[, reason, interval_reading], ...} (JSON-ready)."""
    gates = Gates.from_settings(settings)
    out = {"label": test["label"], "kind": test["kind"], "in_verdict": test.get("in_verdict", True) and not
           test.get("toy"), "unit": test.get("unit", "")}
    if test["kind"] == "paired":
        _paired(test, settings, gates, out)
    elif test["kind"] == "trend":
        _trend(test, settings, gates, out)
    elif test["kind"] == "timing":
        _timing(test, settings, gates, out)
    elif test["kind"] == "overhead":
        _overhead(test, out)
    else:
        raise ValueError(f"unknown test kind {test['kind']!r}")
    return out


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
        paper = f"; the paper prints {test['paper']}" if test.get("paper") else ""
        return f"{test['estimate']:+.2f}% (paper's range {test['range'][0]}-{test['range'][1]}%{paper})"
    if test["kind"] == "trend":
        means = ", ".join(f"{k} {v:.2f}" for k, v in test["means"].items())
        steps = "; ".join(f"{_number(s['estimate'], unit)} [{_number(s['low'], unit)}, {_number(s['high'], unit)}]"
                          for s in test["steps"])
        return f"{means}; steps: {steps or 'no interval'}"
    found = test["interval"]
    if "low" not in found:
        text = "not measured" if not np.isfinite(found["estimate"]) else \
            f"{_number(found['estimate'], unit)} (no interval: one seed, no bootstrap replicates)"
    elif test["kind"] == "timing":
        text = f"{_number(found['estimate'], unit)} [{_number(found['low'], unit)}, {_number(found['high'], unit)}] " \
               f"(median of paired rounds)"
    else:
        text = (f"{_number(found['estimate'], unit)} [{_number(found['low'], unit)}, {_number(found['high'], unit)}] "
                f"({found['method']}, {found['n_seeds']} seed{'s' if found['n_seeds'] > 1 else ''})")
    if test["kind"] == "timing" and test["null"]:
        text += f"; threshold {_number(test['null'], unit)}"
    if test.get("aa"):
        aa = test["aa"]["interval"]
        text += f"; A/A {' vs '.join(test['aa']['pair'])} {_number(aa['estimate'], '%')} " \
                f"[{_number(aa['low'], '%')}, {_number(aa['high'], '%')}]"
    if test.get("floor") and test["floor"]["score"] is not None:
        text += f"; base {test['floor']['base']:.3f} vs shuffled-caption floor {test['floor']['score']:.3f}"
    return text


def shown_verdict(verdict_text: str) -> str:
    """A verdict in bold; anything a gate stopped, in plain text."""
    return f"**{verdict_text}**" if verdict_text in VERDICTS else verdict_text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _side(t: dict) -> str:
    if t["kind"] == "trend":
        return t["direction"]
    if t["kind"] == "overhead":
        return "in range"
    side = {"less": "<", "greater": ">"}[t["side"]]
    return f"{side} {_number(t['null'], t['unit']) if t['null'] else 0}"


def _test_verdict(t: dict) -> str:
    if "interval_reading" in t:
        return f"{t['verdict']} (the interval alone: {t['interval_reading']})"
    return t["verdict"]


def render(manifest: dict, results: list[dict]) -> str:
    settings, prov = manifest["settings"], manifest["provenance"]
    gates = Gates.from_settings(settings)
    lines = [f"# {manifest['title']}", "", *provenance_lines(prov),
             f"- intervals: {settings['level']:.0%}, {settings['bootstrap']} bootstrap draws (seed "
             f"{settings['seed']}); FID intervals also carry each run's sample bootstrap when its metrics "
             "file has replicates (tensorar.evaluation.statistics)",
             "- verdict (bold): supported / contradicted when the interval lies strictly on one side of the claim's "
             "threshold, inconclusive when it touches it; a claim is supported when all its tests are",
             f"- no verdict where the test is not valid (tensorar.reporting.gates; docs/method.md §6): fewer than "
             f"{gates.min_seeds} seeds -> {INDICATIVE}; latencies not from one interleaved job with >= "
             f"{gates.min_repeats} rounds and a passing A/A check (base vs control within +-{gates.aa_tolerance:.0%}) "
             f"-> {INVALID}; a text-to-image base within {gates.t2i_floor_margin:.0%} of the full scale of its "
             f"shuffled-caption floor -> {NOT_TESTABLE}"]
    if manifest.get("note"):
        lines.append(f"- {manifest['note']}")
    lines += ["", "| # | The paper claims | Measured here | Verdict |", "|---|---|---|---|"]
    for claim in results:
        cells = "<br>".join(f"{t['label']}: {measured(t)}" + ("" if t["in_verdict"] else " (not in the verdict)")
                            for t in claim["tests"])
        text = claim["claim"] + (f" ({claim['scope']})" if claim.get("scope") else "")
        lines.append(f"| {claim['id']} | {_cell(text)} | {_cell(cells)} | {shown_verdict(claim['verdict'])} |")
    lines += ["", "## Per test", "",
              "| # | Test | Claimed side | Estimate [interval] | Paired t (cross-check) | Verdict |",
              "|---|---|---|---|---|---|"]
    for claim in results:
        for t in claim["tests"]:
            check = t.get("paired_t")
            check = f"{_number(check['estimate'], t['unit'])} [{_number(check['low'], t['unit'])}, " \
                    f"{_number(check['high'], t['unit'])}]" if check else "-"
            lines.append(f"| {claim['id']} | {_cell(t['label'])} | {_side(t)} | {_cell(measured(t))} | {check} | "
                         f"{_cell(_test_verdict(t))} |")
    reasons: dict[str, list[str]] = {}
    for claim in results:
        for t in claim["tests"]:
            if t.get("reason"):
                reasons.setdefault(f"{t['verdict']}: {t['reason']}", []).append(f"{claim['id']} {t['label']}")
    if reasons:
        lines += ["", "## Why some tests give no verdict", ""]
        lines += [f"- {reason} ({'; '.join(tests)})" for reason, tests in reasons.items()]
    readings = [f"- **{c['id']}**: {c['reading']}" for c in results if c.get("reading")]
    if readings:
        lines += ["", "## Readings", "", *readings]
    return "\n".join(lines) + "\n"


def forest_plot(results: list[dict], out: Path) -> None:
    """Every paired FID difference with its interval, one row each (0 = no difference); a test a gate
    stopped (e.g. one seed) is drawn hollow and grey: its interval is not a verdict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{c['id']}: {t['label']}", t["interval"], t["verdict"] in VERDICTS or t["verdict"] == "inconclusive")
            for c in results for t in c["tests"] if t["kind"] == "paired" and t["unit"] == "FID"]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    for y, (label, found, valid) in enumerate(reversed(rows)):
        color = "tab:blue" if valid else "grey"
        if "low" in found:
            ax.plot([found["low"], found["high"]], [y, y], "-", color=color)
        ax.plot([found["estimate"]], [y], "o", color=color, markerfacecolor=color if valid else "none")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)], fontsize=7)
    ax.set_xlabel("FID difference (A - B; below 0: A better)")
    ax.set_title("Paired FID differences (hollow grey: no verdict, e.g. one seed)")
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

"""When a claims.md test may give a verdict: the validity gates, each with the reason it prints.

A verdict ("supported" / "contradicted", the only ones printed in bold) says more than "this interval lies
on one side of 0": it says the interval measures what the claim is about. Three gates check that first
(docs/method.md §6 registers them and their thresholds, fixed before any run):

- seeds: with one seed an FID / score interval holds the sampling noise of that seed's samples only, while
  trained models differ from seed to seed by more (the toy: +-1-2 toy-FID; simulated with no true
  difference, a one-seed rule gave ~69 % false verdicts). A one-seed test reads "indicative (sampling
  noise only)", with what the sampling noise alone would say beside it, never a verdict.
- timing: latencies compared only when the models were timed in one job, interleaved (`tensorar
  time_sampling`), with at least `min_repeats` paired rounds, and when the job passes its A/A check: the
  base and its equal-steps control (the same network, so the same cost) must time alike within
  +-`aa_tolerance` (`tensorar.evaluation.timing.aa_check`). Else "measurement invalid".
- text-to-image floor: a benchmark score says nothing about TensorAR when the base does not follow its
  prompts: unless the base beats the shuffled-caption floor (the same scorer on images paired with other
  prompts' captions) by `t2i_floor_margin` of the benchmark's full scale, the test is "not testable".
"""
from __future__ import annotations

from dataclasses import dataclass, fields

INDICATIVE = "indicative (sampling noise only)"
INVALID = "measurement invalid"
NOT_TESTABLE = "not testable"
NO_INTERVAL = "inconclusive (no interval)"
VERDICTS = ("supported", "contradicted")  # the statements a gate lets through; printed in bold
# A claim whose tests were all stopped by one gate reads that gate; the order says which one wins.
GATED = (INVALID, NOT_TESTABLE, INDICATIVE, NO_INTERVAL)


@dataclass(frozen=True)
class Gates:
    """The gates' thresholds, registered in docs/method.md §6 before any run (a manifest's `settings` may
    override them, as the tests do; the workflow's config does not)."""

    min_seeds: int = 2  # below this an interval holds sampling noise only
    min_repeats: int = 10  # paired timing rounds
    aa_tolerance: float = 0.10  # |latency(control) / latency(base) - 1| interval bound
    t2i_floor_margin: float = 0.10  # base - shuffled-caption floor, as a fraction of the full scale

    @classmethod
    def from_settings(cls, settings: dict) -> Gates:
        return cls(**{f.name: settings[f.name] for f in fields(cls) if f.name in settings})


def seeds_reason(n_seeds: int, gates: Gates) -> str | None:
    """Why an FID / score test over `n_seeds` seeds gives no verdict, or None when it may."""
    if n_seeds < gates.min_seeds:
        return (f"{n_seeds} seed: the interval holds sampling noise only, not the seed-to-seed spread of "
                "trained models; run config/toy-seeds.yaml (3 seeds) for verdicts")
    return None


def timing_reason(record: dict, models: tuple[str, ...], aa_pair: tuple[str, str] | None, gates: Gates) -> str | None:
    """Why a timing comparison of `models` from one TIMING.json cannot be valid, or None when it can (the
    A/A check, `aa_reason`, comes next)."""
    if "models" not in record:
        return "the models were timed in separate jobs, one after the other: not paired"
    missing = [m for m in models if m not in record["models"]]
    if missing:
        return f"{', '.join(missing)} not timed in this job"
    if record["repeats"] < gates.min_repeats:
        return f"{record['repeats']} repeats, fewer than the {gates.min_repeats} required"
    if aa_pair is None or any(m not in record["models"] for m in aa_pair):
        return "no A/A pair (the base and its equal-steps control) in the job"
    return None


def aa_reason(aa_pair: tuple[str, str], passed: bool, gates: Gates) -> str | None:
    """Why a job whose A/A comparison did not pass cannot compare latencies, or None when it passed."""
    if passed:
        return None
    return (f"the A/A check failed: {aa_pair[0]} and {aa_pair[1]} (one architecture) are not within "
            f"+-{gates.aa_tolerance:.0%} of each other in this job")


def floor_reason(base_score: float, floor_score: float | None, full_scale: float, gates: Gates) -> str | None:
    """Why a text-to-image benchmark cannot test the claim, or None when the base beats the floor."""
    if floor_score is None:
        return ("no shuffled-caption floor measured for this benchmark, so it is unknown whether the base "
                "follows its prompts")
    margin = gates.t2i_floor_margin * full_scale
    if base_score - floor_score <= margin:
        return (f"the base scores {base_score:.3g}, {base_score - floor_score:.3g} above the shuffled-caption "
                f"floor {floor_score:.3g}, not more than the registered margin {margin:.3g}: too close to "
                f"chance for its score to show how well it follows its prompts")
    return None


def combine(verdicts: list[str]) -> str:
    """A claim's verdict from its tests': contradicted if a valid test is, supported if all are, inconclusive
    if a valid test is; else the strongest gate among them (GATED order)."""
    if not verdicts:
        return "inconclusive"
    if "contradicted" in verdicts:
        return "contradicted"
    if all(v == "supported" for v in verdicts):
        return "supported"
    if "inconclusive" in verdicts:
        return "inconclusive"
    return next(g for g in GATED if g in verdicts)

"""The paper's claims that results/claims.md checks, and how each is read where the text allows more than one
reading (docs/method.md §6). Keys are the claim ids of the plan's claims manifest, in report order."""
from __future__ import annotations

CLAIMS = {
    "1": ("TensorAR improves every backbone's FID (Table 2)",
          "FID(+TensorAR) - FID(base) < 0 for every Table 2 backbone, paired by seed."),
    "1b": ("with a parameter overhead of 1.5-4.6% (Table 2)",
           "the parameter count of base + TensorAR (k = 4, depth 1, as the paper configures it, Appendix A.1) "
           "over the base's, for every Table 2 row at the paper's presets, counted on the meta device. The "
           "plug-in is about 12·D² per query-transformer layer plus k-dependent embeddings, so a toy "
           "backbone's overhead measures its width: the toy rows are shown, marked n/a, and decide nothing."),
    "2": ("fine-tuning the base for the same steps without the plug-in does not improve FID (Fig. 5)",
          "the literal reading: FID(control) - FID(base) is not below 0 (supported when the control is "
          "worse, inconclusive when the interval contains 0). Qualified: the paper fine-tunes converged "
          "released checkpoints; a toy base trained for a fixed budget may not have converged, and then the "
          "control's gain measures the base's training length, not the plug-in (the toy controls gained "
          "0.5-1.8 toy-FID from 300 more steps)."),
    "2b": ("ours: TensorAR beats the equal-steps control, i.e. its gain is not the extra steps",
           "FID(+TensorAR) - FID(control) < 0 for every Table 2 backbone, paired by seed. Ours, reported apart: "
           "it does not enter claim 2's verdict."),
    "3": ("all four schedules beat the baseline, and exponential is best (Table 5)",
          "FID(schedule) - FID(base) < 0 for each schedule, and FID(exponential) - FID(other) < 0 for each "
          "other schedule."),
    "3b": ("with Algorithm 1's loss weights read literally, TensorAR still beats the baseline (Appendix B)",
           "registered reading (docs/method.md §2): Table 1's 1-based positions, so the last draft is pure noise, "
           "and w_j = (β(j) - β(j-1)) / β(j): FID(literal) - FID(base) < 0; beside it, not in the verdict, "
           "FID(literal) - FID(our rdm reading)."),
    "4": ("FID decreases monotonically with k (Table 6a)",
          "every step to the next larger k lowers FID (paired consecutive differences < 0); the variants "
          "of Table 6a only (k = 1 is the base model, trained differently)."),
    "5": ("d = 1 is best, and deeper query transformers cost latency (Table 6b: 0.11 s base, 0.12 / 0.14 / "
          "0.15 s)",
          "FID(d=1) - FID(d) < 0 for every deeper d, and latency increases with each step in depth "
          "(dedicated timing jobs; the spread is that of the repeats)."),
    "6": ("throughput drops only modestly (Fig. 4; Table 6b latency +9%)",
          "ours: 'modestly' read as TensorAR's latency per image (generation + decoding) at most "
          "claims.modest_latency above its base's, per Table 2 backbone: the median of per-round ratios of "
          "one interleaved timing job, valid only when the base and its control (one architecture) time "
          "alike in the same job (the A/A check)."),
    "7": ("text-to-image: GenEval and DPG-Bench overall improve for both backbones (Tables 3-4)",
          "overall(+TensorAR) - overall(base) > 0 for every text-to-image backbone and benchmark that is run "
          "(the claim cell says which), testable only where the base beats the shuffled-caption floor by "
          "claims.t2i_floor_margin; beside it (ours, not in the verdict) TensorAR - control."),
    "ours-a": ("ours: drafts re-noised at sampling (draft_noise: schedule) beat the equal-steps control",
               "FID(TensorAR, draft noise) - FID(control) < 0; beside it, against TensorAR as the paper "
               "samples it (not in the verdict)."),
    "ours-b": ("ours: self-drafting training beats the equal-steps control",
               "FID(self-drafting TensorAR) - FID(control) < 0; beside it, against the paper's noised "
               "drafts (not in the verdict)."),
    "ours-c": ("ours: with longer fine-tuning, TensorAR beats a control fine-tuned as long",
               "FID(TensorAR, N x steps) - FID(control, N x steps) < 0."),
}

"""The memory plan as a Markdown table, and the block of docs/resources.md that holds it."""
from __future__ import annotations

from tensorar.resources.jobs import Planned

GiB = 2**30
BEGIN = ("<!-- BEGIN resources table: written by "
         "`tensorar resources --configfile config/paper.yaml --update-doc docs/resources.md` -->")
END = "<!-- END resources table -->"


def _gib(n: int) -> str:
    return f"{n / GiB:.1f}"


def render(planned: list[Planned]) -> str:
    lines = ["| job | GPUs x GiB | predicted GPU peak GiB (weights / grads / AdamW / activations / logits / other) "
             "| strategy | host resident / page cache GiB | node asks GiB | |",
             "|---|---|---|---|---|---|---|"]
    for p in planned:
        j = p.job
        gpu = f"{j.gpus} x {j.gpu_bytes / GiB:.0f}{'*' if j.gpu_assumed else ''}" if j.gpus else "CPU"
        if p.gpu is None:
            peak = "—"
        else:
            b = p.gpu
            parts = " / ".join(_gib(x) for x in (b.parameters, b.gradients, b.optimizer, b.activations, b.logits,
                                                  b.other))
            peak = f"**{_gib(b.total)}** ({parts})"
        if p.choice is not None:
            c = p.choice
            strategy = c.strategy + (" + AC" if c.activation_checkpointing else "")
            per_gpu = f", batch {j.batch // j.gpus}/GPU"
            strategy += f", micro-batch {c.micro_batch_size}" if c.micro_batch_size else per_gpu
        elif j.stage == "train":
            strategy = "—" if j.gpus else f"one process, batch {j.batch}"
        else:
            strategy = f"batch {j.batch}/{'GPU' if j.gpus else 'process'}"
        cache = _gib(p.host.page_cache) if j.stage != "train" or j.codes_items is not None else "?"
        status = "refused" if p.refusal else "fits"
        lines.append(f"| {j.name} | {gpu} | {peak} | {strategy} | {_gib(p.host.resident)} / {cache} "
                     f"| {j.node_bytes / GiB:.0f} | {status} |")
    notes = ["", "GiB = 2^30 bytes. AC: activation checkpointing per transformer block.",
             "Page cache: the memory-mapped codes and stored conditions, shared by the node's ranks and reclaimable "
             "(\"?\": the dataset's size is not known from the config)."]
    if any(p.job.gpu_assumed for p in planned):
        notes.append("\\*: `resources.<stage>.gpu_mem_mb` is not set; an 80 GB GPU is assumed (ours).")
    notes.append("CPU: a job without GPUs (the toy); its peak is counted in the node's resident memory.")
    refusals = [p.refusal for p in planned if p.refusal]
    if refusals:
        notes += ["", "Refused:", *(f"- {r}" for r in refusals)]
    return "\n".join(lines + notes) + "\n"


def replace_block(document: str, table: str, where: str) -> str:
    """`document` with the text between BEGIN and END replaced by `table`."""
    if BEGIN not in document or END not in document:
        raise ValueError(f"{where}: no '{BEGIN}' ... '{END}' block to update")
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}{END}{tail}"

"""The run's own time in one sentence, from meta.json's ``stages`` (``bench.plumbing.stages``):
the whole, then each stage summed over the models, its long parts in brackets."""

from __future__ import annotations


def _seconds(v: float) -> str:
    return f"{v:.0f} s" if v >= 10 else f"{v:.1f} s"


def stage_sentence(meta: dict) -> str:
    """"The run took 112 s: start-up 3.1 s, data 0.4 s, train 24 s (warm-up ... 17 s, ...), ...";
    empty for a run that recorded no stages."""
    rows = [r for r in meta.get("stages") or [] if isinstance(r, dict) and isinstance(r.get("seconds"), (int, float))]
    whole: dict[str, float] = {}
    parts: dict[str, dict[str, float]] = {}
    for r in rows:
        stage = str(r.get("stage"))
        if r.get("part"):
            into = parts.setdefault(stage, {})
            into[str(r["part"])] = into.get(str(r["part"]), 0.0) + r["seconds"]
        else:
            whole[stage] = whole.get(stage, 0.0) + r["seconds"]
    if not whole:
        return ""
    said = []
    for stage, seconds in whole.items():
        if seconds < 0.05:
            continue
        inner = ", ".join(f"{p} {_seconds(v)}" for p, v in parts.get(stage, {}).items() if v >= 0.05)
        said.append(f"{stage} {_seconds(seconds)}" + (f" ({inner})" if inner else ""))
    return f"The run took {_seconds(sum(whole.values()))}: {', '.join(said)}."

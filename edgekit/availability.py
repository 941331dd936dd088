"""Which targets can run on this machine, and if not, why."""

from __future__ import annotations

from edgekit.backends import install_hint, missing
from edgekit.targets import get_target, list_targets


def target_status() -> list[dict]:
    """One row per target: name, availability, and the missing backends with how to install them."""
    rows = []
    for name in list_targets():
        target = get_target(name)
        absent = [(module, extra) for module, extra in target.requires if missing(module)]
        reason = None
        if absent:
            reason = f"missing {', '.join(m for m, _ in absent)}: " + "; ".join(sorted({install_hint(m, e) for m, e in absent}))
        rows.append({"name": name, "available": not absent, "precision": target.precision,
                     "description": target.description, "reason": reason, "steps": [s.name for s in target.steps]})
    return rows

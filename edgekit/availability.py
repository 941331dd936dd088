"""Which targets can run on this machine, and if not, why."""

from __future__ import annotations

from edgekit.targets import get_target, list_targets


def target_status() -> list[dict]:
    """One row per target: name, availability, and the missing backends with how to install them."""
    rows = []
    for name in list_targets():
        target = get_target(name)
        reason = target.unavailable_reason()
        rows.append({"name": name, "available": reason is None, "precision": target.precision,
                     "description": target.description, "reason": reason, "steps": [s.name for s in target.steps],
                     "caveat": target.caveat})
    return rows

"""``upgrade``: move a downstream package to a new upstream revision (spec §4.4).

The three file maps are merged with the requested kpt strategy; the Kptfile then points at the
new upstream (``upstream`` and ``upstreamLock``, git or OCI, as a clone would), merge-key
comments are added, and — beyond Porch — every field both sides changed differently is recorded in a
``MergeConflicts`` condition of the Kptfile, which the revision shows in ``status.conditions``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from porch.errors import Invalid
from porch.krm.kptfile import kptfile_sync_conditions, read_kptfile
from porch.krm.merge3 import Conflict
from porch.krm.update import STRATEGIES, upgrade
from porch.tasks.clone import Upstream, set_upstream

MERGE_CONFLICTS = "MergeConflicts"


def upgrade_task(
    *,
    local: Mapping[str, str],
    old_upstream: Mapping[str, str],
    new_upstream: Mapping[str, str],
    strategy: str,
    package_path: str,
    upstream: Upstream,
) -> tuple[dict[str, str], list[Conflict]]:
    strategy = strategy or "resource-merge"
    if strategy not in STRATEGIES:
        raise Invalid(
            f"unrecognized update strategy {strategy}; use one of {', '.join(STRATEGIES)}"
        )
    for what, files in (("local", local), ("new upstream", new_upstream)):
        if "Kptfile" not in files:
            raise Invalid(f"the {what} package revision has no Kptfile at its root")
    files, report = upgrade(strategy, local, old_upstream, new_upstream)
    if "Kptfile" not in files:
        raise Invalid("the upgraded package has no Kptfile at its root")
    name = package_path.rsplit("/", 1)[-1]
    text = set_upstream(files["Kptfile"], name=name, upstream=upstream)
    status = read_kptfile(text).status
    existing = [
        {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
        for c in (status.conditions if status is not None else [])
        if c.type != MERGE_CONFLICTS
    ]
    if report.conflicts:
        existing.append(conflicts_condition(report.conflicts))
    text = kptfile_sync_conditions(text, existing)
    files["Kptfile"] = text
    return files, list(report.conflicts)


def conflicts_condition(conflicts: list[Conflict]) -> dict[str, str]:
    """One condition whose message is a JSON list a person (or porchctl) can read back."""
    entries = []
    for c in conflicts:
        file, _, rest = c.path.partition(":")
        resource, _, field = rest.partition(":")
        entries.append(
            {
                "file": file,
                "resource": resource,
                "field": field,
                "local": c.local,
                "upstream": c.upstream,
                "chosen": c.chosen,
            }
        )
    return {
        "type": MERGE_CONFLICTS,
        "status": "True",
        "reason": "LocalAndUpstreamChanged",
        "message": json.dumps(entries, sort_keys=True),
    }

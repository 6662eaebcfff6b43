"""``edit`` (copy): a new revision of the same package from a published one (spec §4.3)."""

from __future__ import annotations

from collections.abc import Mapping


def edit_task(source_files: Mapping[str, str]) -> dict[str, str]:
    # Files are copied verbatim; upstream and upstreamLock stay as they were.
    return dict(source_files)

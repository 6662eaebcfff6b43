"""The orchestration engine (spec §2–3, §8)."""

from porch.engine.engine import Engine
from porch.engine.watch import Watcher, WatchEvent

__all__ = ["Engine", "WatchEvent", "Watcher"]

"""One small mutation per task type: each returns the package's new file set."""

from porch.tasks.edit import edit_task
from porch.tasks.init import init_task

__all__ = ["edit_task", "init_task"]

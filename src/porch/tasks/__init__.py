"""One small mutation per task type: each returns the package's new file set."""

from porch.tasks.clone import OciUpstreamLock, UpstreamLock, clone_task
from porch.tasks.edit import edit_task
from porch.tasks.init import init_task

__all__ = ["OciUpstreamLock", "UpstreamLock", "clone_task", "edit_task", "init_task"]

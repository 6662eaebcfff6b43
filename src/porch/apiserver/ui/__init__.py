"""The web UI served at ``/ui`` (see ``docs/ui.md``).

The front end is plain ES modules and CSS under ``static/``: no build step, no third-party
code. It talks to the same JSON API as kubectl; the only server-side piece of its own is an
access review (``POST /ui/api/access``), so buttons can be disabled before a click would be 403.
"""

from porch.apiserver.ui.routes import STATIC_DIR, ui_routes

__all__ = ["STATIC_DIR", "ui_routes"]

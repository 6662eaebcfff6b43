"""The ``porchctl`` client command: repositories and package revisions on a porch server.

It reaches the server only through ``porch.client`` (an import-linter contract checks this),
so it works against ``porch serve`` and upstream Porch alike. Errors are one line on stderr
with the exit codes documented in docs/porchctl.md; tracebacks never reach the user.
"""

from __future__ import annotations

from typing import Any

import click

from porch import __version__
from porch.cli.ctl import rpkg_extras, rpkg_files, rpkg_lifecycle, rpkg_upgrade
from porch.cli.ctl._common import (
    EXIT_ERROR,
    AliasGroup,
    Ctl,
    CtlError,
    connection_options,
)
from porch.cli.ctl.repo import repo
from porch.cli.ctl.rpkg import rpkg
from porch.client import ClientError

# Importing the verb modules registers their commands on ``rpkg``.
_VERBS = (rpkg_extras, rpkg_files, rpkg_lifecycle, rpkg_upgrade)


class Porchctl(AliasGroup):
    """Root group: no exception escapes as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as exc:
            raise CtlError.from_client(exc) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:  # noqa: BLE001 - a bug still gets one line, not a traceback
            raise CtlError(f"internal error: {type(exc).__name__}: {exc}", EXIT_ERROR) from None
        finally:
            ctl = ctx.find_object(Ctl)
            if ctl is not None:
                ctl.close()


EPILOG = """\b
Exit codes:
  0  success            4  not found           7  invalid / precondition not met
  1  other error        5  conflict            8  local files (pull/push)
  2  usage error        6  unauthorized or forbidden
  3  no kubeconfig, server unreachable or TLS failure
"""


@click.group(cls=Porchctl, aliases={"rpackage": "rpkg"}, epilog=EPILOG)
@click.version_option(__version__, prog_name="porchctl")
@connection_options
@click.pass_context
def main(ctx: click.Context) -> None:
    """porchctl: manage repositories and package revisions on a porch server.

    Connection flags (--kubeconfig, --context, -s/--server, --token, -n/--namespace) may be
    given here or after any subcommand.
    """
    ctx.ensure_object(Ctl)


main.add_command(repo)
main.add_command(rpkg)

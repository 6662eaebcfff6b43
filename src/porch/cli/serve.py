"""``porch serve``: the Kubernetes-compatible API server over the embedded engine.

HTTPS is the default because kubectl only sends bearer tokens over TLS: the first start makes a
CA and a server certificate under the data dir, an admin token in ``tokens.csv`` and a
kubeconfig that uses both. ``--insecure-http`` exists for tests and demos, and only together
with ``--allow-anonymous`` since no credentials would ever arrive over it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from porch.errors import PorchError
from porch.fn.types import DEFAULT_IMAGE_PREFIX

MIB = 1024 * 1024


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".porch"),
    show_default=True,
    help="Store, git repositories, certificates, tokens and the kubeconfig live here.",
)
@click.option(
    "--listen", default="127.0.0.1:7007", show_default=True, help="host:port (port 0: any)"
)
@click.option(
    "--controllers",
    "run_controllers",
    is_flag=True,
    help="Also run the PackageVariant(Set) controllers in-process (docs/controllers.md).",
)
@click.option(
    "--tls-cert", type=click.Path(dir_okay=False, path_type=Path), help="Server cert (PEM)."
)
@click.option(
    "--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="Server key (PEM)."
)
@click.option(
    "--token-file", type=click.Path(dir_okay=False, path_type=Path), help="Static tokens CSV."
)
@click.option(
    "--rbac-file", type=click.Path(dir_okay=False, path_type=Path), help="RBAC policy YAML."
)
@click.option("--insecure-http", is_flag=True, help="Serve plain HTTP (needs --allow-anonymous).")
@click.option("--allow-anonymous", is_flag=True, help="Requests without credentials are allowed.")
@click.option(
    "--max-request-body",
    type=int,
    default=6 * MIB,
    show_default=True,
    help="Larger request bodies get 413.",
)
@click.option(
    "--watch-history",
    type=int,
    default=1000,
    show_default=True,
    help="Events kept for watch resume; older resourceVersions get 410 Expired.",
)
@click.option(
    "--store",
    default="",
    help=(
        "Store: a SQLite file path or sqlite:///path [default: DATA_DIR/store.db], or"
        " postgresql://USER:PASSWORD@HOST:PORT/DB for several replicas on one database."
    ),
)
@click.option(
    "--encryption-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fernet key file; Secret data is then encrypted at rest (see docs/auth.md).",
)
@click.option(
    "--function-runner",
    default="",
    metavar="HOST:PORT",
    help="A function runner (`porch fn-runner`) for images no builtin or exec entry provides.",
)
@click.option(
    "--default-image-prefix",
    default=DEFAULT_IMAGE_PREFIX,
    show_default=True,
    help="Registry prefix of function images given without one.",
)
@click.option(
    "--function-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds one function call may take.",
)
@click.option(
    "--exec-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Allow-list of local function binaries (see docs/functions.md); exec is off without it.",
)
@click.option(
    "--sync-ref-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds between checks of each repository's git refs (a change triggers a sync).",
)
@click.option(
    "--sync-full-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=3600.0,
    show_default=True,
    help="Seconds between full syncs of a repository without spec.sync.schedule.",
)
@click.option(
    "--max-concurrent-syncs",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Repository syncs running at once.",
)
@click.option(
    "--sync-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds one repository's sync may take before it is marked not Ready.",
)
@click.option(
    "--no-sync", is_flag=True, help="Do not sync repositories in the background (docs/sync.md)."
)
@click.option(
    "--content",
    type=click.Choice(["git", "db"]),
    default="git",
    show_default=True,
    help=(
        "Where Draft and Proposed revisions live: git branches, or only the store (db; git is"
        " written on publish, delete of a published revision and sync). See docs/store.md."
    ),
)
@click.option(
    "--db-push-drafts-to-git",
    is_flag=True,
    help="With --content db: also mirror every draft write to its git draft branch.",
)
def serve(
    data_dir: Path,
    listen: str,
    run_controllers: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    token_file: Path | None,
    rbac_file: Path | None,
    insecure_http: bool,
    allow_anonymous: bool,
    max_request_body: int,
    watch_history: int,
    store: str,
    encryption_key_file: Path | None,
    function_runner: str,
    default_image_prefix: str,
    function_timeout: float,
    exec_config: Path | None,
    sync_ref_interval: float,
    sync_full_interval: float,
    max_concurrent_syncs: int,
    sync_timeout: float,
    no_sync: bool,
    content: str,
    db_push_drafts_to_git: bool,
) -> None:
    """Serve the Porch API for kubectl and Kubernetes clients."""
    if insecure_http and not allow_anonymous:
        raise click.UsageError(
            "--insecure-http needs --allow-anonymous: kubectl sends credentials only over TLS,"
            " so over plain HTTP every request would be anonymous"
        )
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if run_controllers and not insecure_http and token_file is not None and tls_cert is not None:
        raise click.UsageError(
            "--controllers needs the kubeconfig porch serve writes; it is not written with"
            " --token-file and --tls-cert together"
        )
    if db_push_drafts_to_git and content != "db":
        raise click.UsageError("--db-push-drafts-to-git needs --content db")
    from porch.apiserver import auth, create_app, serving, tls
    from porch.apiserver.access import security_from_files
    from porch.server import Settings, build_engine, build_syncer, ensure_demo

    data_dir = data_dir.resolve()
    settings = Settings(
        data_dir=data_dir,
        store=store,
        encryption_key_file=encryption_key_file,
        function_runner=function_runner,
        default_image_prefix=default_image_prefix,
        function_timeout=function_timeout,
        exec_config=exec_config,
        sync=not no_sync,
        sync_ref_interval=sync_ref_interval,
        sync_full_interval=sync_full_interval,
        max_concurrent_syncs=max_concurrent_syncs,
        sync_timeout=sync_timeout,
        content=content,
        db_push_drafts_to_git=db_push_drafts_to_git,
    )
    try:
        engine = build_engine(settings)
        ensure_demo(engine, data_dir)
    except PorchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    sock = serving.bind(listen)
    host, port = sock.getsockname()[:2]
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    kubeconfig = data_dir / "kubeconfig"
    tls_files: serving.TLSFiles | None = None
    client_ca: bytes | None = None
    if insecure_http:
        url = f"http://{host}:{port}"
        tls.write_kubeconfig(kubeconfig, server_url=url, ca_pem=None, token=None)
    else:
        url = f"https://{host}:{port}"
        generated = tls.ensure_server_cert(data_dir)
        if tls_cert is not None and tls_key is not None:
            tls_files = serving.TLSFiles(tls_cert, tls_key)
            ca_pem = tls_cert.read_bytes()
        else:
            client_ca = generated.ca_pem
            tls_files = serving.TLSFiles(generated.cert_path, generated.key_path, generated.ca_path)
            ca_pem = generated.ca_pem
        if token_file is None:
            token = tls.ensure_admin_token(data_dir)
            token_file = data_dir / "tokens.csv"
            tls.write_kubeconfig(kubeconfig, server_url=url, ca_pem=ca_pem, token=token)
        elif client_ca is not None:
            # Someone else's token file: the kubeconfig gets an admin client certificate.
            cert, key = tls.issue_client_cert(data_dir, tls.ADMIN_USER, [tls.ADMIN_GROUP])
            tls.write_kubeconfig(
                kubeconfig,
                server_url=url,
                ca_pem=ca_pem,
                token=None,
                client_cert_pem=cert,
                client_key_pem=key,
            )
        else:
            kubeconfig = Path()
    try:
        security = security_from_files(
            token_file=token_file,
            rbac_file=rbac_file,
            allow_anonymous=allow_anonymous,
            client_ca=client_ca,
        )
    except (OSError, auth.AuthFileError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    app = create_app(engine, security=security, max_body=max_request_body)
    serving.configure_logging()
    hint = (
        f"kubectl --kubeconfig {kubeconfig} get packagerevisions"
        if kubeconfig != Path()
        else "kubectl get packagerevisions with a kubeconfig holding a token from --token-file"
    )
    click.echo(f"porch serving on {url} - try: {hint}", nl=True)
    sys.stdout.flush()
    syncer = build_syncer(engine, settings)
    if syncer is not None:
        syncer.start()
    stop_controllers = _start_controllers(kubeconfig) if run_controllers else None
    try:
        serving.run(app, sock, engine=engine, tls=tls_files, watch_history=watch_history)
    finally:
        if syncer is not None:
            syncer.stop()
        if stop_controllers is not None:
            stop_controllers()
    engine.store.close()


def _start_controllers(kubeconfig: Path) -> Callable[[], None]:
    """The variant controllers in this process, as clients of this server (its kubeconfig)."""
    from porch.cli.controllers import client_factory
    from porch.controllers import ControllerRunner

    runner = ControllerRunner(
        client_factory(server="", token="", kubeconfig=kubeconfig, insecure=False)
    )
    runner.start()
    return runner.stop

"""The controllers running on their own: ``porch serve --controllers`` and ``porch controllers``.

Nothing here calls a reconcile directly: watches (or the resync) must notice the new objects.
Waits are for conditions, with generous deadlines.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from porch.api.types import Lifecycle
from porch.client import CONFIG, PorchClient
from tests.apiserver.served import Lines, porch_command, start
from tests.controllers.conftest import Env, condition, wait_for


def _variant_reaches_ready(env: Env, name: str) -> None:
    env.variant(
        name,
        upstream={"repo": "up", "package": "base"},
        downstream={"repo": "down", "package": name},
    )
    wait_for(lambda: env.drafts("down"), "the variant's draft")
    wait_for(
        lambda: condition(env.get_variant(name), "Ready").get("status") == "True", "Ready=True"
    )


def test_serve_with_controllers_over_tls(tmp_path: Path) -> None:
    served = start(tmp_path / "data", "--no-sync", "--controllers")
    try:
        env = Env(served, tmp_path, "default")
        env.client = PorchClient.from_kubeconfig(served.kubeconfig, namespace="default")
        env.upstream()
        env.repo("down")
        _variant_reaches_ready(env, "inproc")
        # A new upstream revision is picked up once the downstream is published.
        [draft] = env.drafts("down")
        env.publish(draft.metadata.name)
        env.new_upstream_revision("up.base.v1", "v2", "large")
        upgraded = wait_for(
            lambda: [d for d in env.drafts("down") if d.spec.tasks[0].type == "upgrade"],
            "the upgrade draft",
        )
        assert [d.metadata.name for d in upgraded] == ["down.inproc.packagevariant-2"]
        env.client.delete_object(CONFIG, "packagevariants", "inproc")
        wait_for(
            lambda: not env.client.list_objects(CONFIG, "packagevariants"), "the variant to go"
        )
        published = wait_for(
            lambda: [
                p for p in env.revisions("down") if p.spec.lifecycle == Lifecycle.DELETION_PROPOSED
            ],
            "the published downstream to be proposed for deletion",
        )
        assert [p.metadata.name for p in published] == ["down.inproc.packagevariant-1"]
        assert env.drafts("down") == []
    finally:
        served.stop()
    assert "Traceback" not in "\n".join(served.stderr.seen)


def test_porch_controllers_command(env: Env) -> None:
    env.upstream()
    env.repo("down")
    proc = subprocess.Popen(
        [*porch_command(), "controllers", "--server", env.served.url, "-n", env.ns],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        Lines(proc.stdout).wait_for("porch controllers running against", timeout=60)
        _variant_reaches_ready(env, "cli")
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0


def test_controllers_command_without_a_kubeconfig_fails_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [*porch_command(), "controllers", "--kubeconfig", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: no kubeconfig found")


def test_serve_refuses_controllers_without_a_kubeconfig_to_use(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from porch.cli.serve import serve

    args = ["--data-dir", str(tmp_path), "--controllers", "--token-file", "t.csv"]
    result = CliRunner().invoke(serve, [*args, "--tls-cert", "c.pem", "--tls-key", "k.pem"])
    assert result.exit_code == 2
    assert "--controllers needs the kubeconfig porch serve writes" in result.output

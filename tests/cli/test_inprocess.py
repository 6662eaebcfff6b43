"""porchctl in-process: click's runner, the client on an injected transport."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from porch.apiserver import Security, create_app
from porch.cli.ctl._common import Ctl, progress
from porch.cli.ctl._output import age, jsonpath, table
from porch.cli.porchctl import main
from porch.client import InProcessTransport
from porch.engine import Engine
from porch.server import Settings, build_engine, ensure_demo


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    data = tmp_path / "data"
    eng = build_engine(Settings(data_dir=data))
    ensure_demo(eng, data)
    yield eng
    eng.store.close()


@pytest.fixture
def transport(engine: Engine) -> Iterator[InProcessTransport]:
    t = InProcessTransport(create_app(engine, security=Security(allow_anonymous=True)))
    yield t
    t.close()


def run(transport: httpx.BaseTransport, *args: str, stdin: str | None = None) -> Result:
    ctl = Ctl(server="http://porch.test", transport=transport, sleep=lambda _s: None)
    return CliRunner().invoke(main, list(args), obj=ctl, input=stdin)


def test_get_json_is_a_list_and_one_name_is_an_object(transport: InProcessTransport) -> None:
    many = json.loads(run(transport, "rpkg", "get", "-o", "json").stdout)
    assert many["kind"] == "List" and len(many["items"]) == 4
    one = json.loads(run(transport, "rpkg", "get", "demo.basens.v1", "-o", "json").stdout)
    assert one["kind"] == "PackageRevision" and one["spec"]["revision"] == 1


def test_lifecycle_flow_and_aliases(transport: InProcessTransport) -> None:
    assert run(transport, "rpackage", "edit", "demo.basens.v1", "--workspace", "v2").exit_code == 0
    assert run(transport, "rpkg", "propose", "demo.basens.v2").stdout == "demo.basens.v2 proposed\n"
    result = run(transport, "rpkg", "approve", "demo.basens.v2")
    assert result.stdout == "demo.basens.v2 approved\n"
    result = run(transport, "rpkg", "propose-del", "demo.basens.v2")
    assert result.stdout == "demo.basens.v2 proposed for deletion\n"
    assert run(transport, "rpkg", "delete", "demo.basens.v2").stdout == "demo.basens.v2 deleted\n"


def test_bulk_with_a_failure_prints_the_summary_and_exits_non_zero(
    transport: InProcessTransport,
) -> None:
    run(transport, "rpkg", "copy", "demo.basens.v1", "--workspace", "v2")
    result = run(transport, "rpkg", "propose", "--field-selector", "spec.packageName=basens")
    assert result.exit_code == 7
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "RESULT"]
    rows = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines[1:]}
    assert rows == {
        "demo.basens.main": "failed: cannot propose Published package demo.basens.main",
        "demo.basens.v2": "proposed",
        "demo.basens.v1": "failed: cannot propose Published package demo.basens.v1",
    }
    assert result.stderr == "1 succeeded, 2 failed\n"


def test_server_errors_are_one_line(transport: InProcessTransport) -> None:
    run(transport, "repo", "get")  # the client is built lazily; this must not matter
    result = run(transport, "rpkg", "clone", "demo.nosuch.v1", "other", "--repository", "demo")
    assert result.exit_code in (4, 7)  # not found, or clone not supported by this server yet
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    result = run(transport, "rpkg", "init", "x", "--repository", "demo", "--workspace", "Bad!")
    assert result.exit_code == 7 and result.stderr.startswith("error: invalid workspaceName")


PR = "porch.kpt.dev/v1alpha1"


def pr(name: str, package: str, revision: int, lifecycle: str, task: Any = None) -> Any:
    repo, _, ws = name.partition(".")[0], None, name.rsplit(".", 1)[1]
    return {
        "apiVersion": PR,
        "kind": "PackageRevision",
        "metadata": {"name": name, "namespace": "default", "labels": {}},
        "spec": {
            "packageName": package,
            "repository": repo,
            "workspaceName": ws,
            "revision": revision,
            "lifecycle": lifecycle,
            "tasks": [task] if task else [],
        },
    }


CLONE = {"type": "clone", "clone": {"upstreamRef": {"upstreamRef": {"name": "up.base.v1"}}}}
UPGRADED = {"type": "upgrade", "upgrade": {"newUpstreamRef": {"name": "up.base.v2"}}}


class Fake:
    """A list of package revisions and a record of what was created."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.created: list[Any] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            body = json.loads(request.content)
            self.created.append(body)
            body["metadata"]["name"] = "down.app.up"
            return httpx.Response(201, json=body)
        name = request.url.path.rsplit("/", 1)[1]
        if name == "packagerevisions":
            return httpx.Response(200, json={"kind": "PackageRevisionList", "items": self.items})
        found = [i for i in self.items if i["metadata"]["name"] == name]
        return httpx.Response(200, json=found[0]) if found else httpx.Response(404, json={})


def upstream_world(local_task: Any) -> Fake:
    local = pr("down.app.v1", "app", 1, "Published", local_task)
    local["metadata"]["labels"] = {"kpt.dev/latest-revision": "true"}
    return Fake(
        [
            pr("up.base.v1", "base", 1, "Published"),
            pr("up.base.v2", "base", 2, "Published"),
            pr("up.base.v3", "base", 3, "Published"),
            pr("up.base.v4", "base", 0, "Draft"),
            local,
        ]
    )


def test_upgrade_resolves_old_and_new_upstream(tmp_path: Path) -> None:
    fake = upstream_world(CLONE)
    result = run(
        httpx.MockTransport(fake),
        "rpkg", "upgrade", "down.app.v1", "--workspace", "up", "--strategy", "copy-merge",
    )  # fmt: skip
    assert (result.exit_code, result.stdout) == (0, "down.app.up created\n")
    (body,) = fake.created
    assert body["spec"]["workspaceName"] == "up" and body["spec"]["packageName"] == "app"
    assert body["spec"]["tasks"] == [
        {
            "type": "upgrade",
            "upgrade": {
                "oldUpstreamRef": {"name": "up.base.v1"},
                "newUpstreamRef": {"name": "up.base.v3"},
                "localPackageRevisionRef": {"name": "down.app.v1"},
                "strategy": "copy-merge",
            },
        }
    ]


def test_upgrade_to_a_given_revision_and_after_a_previous_upgrade() -> None:
    fake = upstream_world(UPGRADED)
    args = ("rpkg", "upgrade", "down.app.v1", "--workspace", "up", "--revision", "3")
    assert run(httpx.MockTransport(fake), *args).exit_code == 0
    refs = fake.created[0]["spec"]["tasks"][0]["upgrade"]
    assert (refs["oldUpstreamRef"]["name"], refs["newUpstreamRef"]["name"]) == (
        "up.base.v2",
        "up.base.v3",
    )
    missing = run(httpx.MockTransport(fake), *args[:-1], "9")
    assert missing.exit_code == 7 and "revision 9 does not exist" in missing.stderr


def test_upgrade_discover_lists_newer_upstreams() -> None:
    result = run(
        httpx.MockTransport(upstream_world(CLONE)), "rpkg", "upgrade", "--discover", "upstream"
    )
    assert result.stdout.splitlines() == [
        "PACKAGE REVISION   UPSTREAM     UPDATES",
        "down.app.v1        up.base.v1   v2, v3",
    ]


def test_a_non_json_answer_is_one_line_not_a_traceback() -> None:
    transport = httpx.MockTransport(lambda _r: httpx.Response(200, text="<html>"))
    result = run(transport, "rpkg", "get")
    assert result.exit_code == 1
    path = "/apis/porch.kpt.dev/v1alpha1/namespaces/default/packagerevisions"
    assert result.stderr == f"error: GET {path}: the server answered with non-JSON\n"


def test_output_helpers() -> None:
    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    ago = {s: (now - dt.timedelta(seconds=s)).isoformat() for s in (5, 150, 3700, 90000, 900000)}
    assert [age(ago[s], now) for s in sorted(ago)] == ["5s", "2m30s", "61m", "25h", "10d"]
    assert age(None) == "<unknown>"
    assert jsonpath({"a": [{"b.c": 1}]}, ".a[0]['b.c']") == 1
    assert jsonpath({"a": {}}, "{.a.b}") is None
    assert table(("A", "LONGER"), [("xyz", "1")]) == "A     LONGER\nxyz   1\n"


def test_push_prints_render_results(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "Kptfile").write_text("apiVersion: kpt.dev/v1\nkind: Kptfile\n")
    meta = "kind: KptRevisionMetadata\nmetadata:\n  name: d.app.v1\n  resourceVersion: '5'\n"
    (pkg / ".KptRevisionMetadata").write_text(meta)
    sent: list[Any] = []

    def server(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        result = {
            "exitCode": 1,
            "items": [
                {"image": "set-labels:v1", "exitCode": 0},
                {
                    "image": "kubeval:v1",
                    "exitCode": 1,
                    "stderr": "boom",
                    "results": [{"message": "bad field", "severity": "error"}],
                },
            ],
        }
        return httpx.Response(200, json={**body, "status": {"renderStatus": {"result": result}}})

    result = run(httpx.MockTransport(server), "rpkg", "push", "d.app.v1", str(pkg))
    assert result.stdout.splitlines() == [
        '[RUNNING] "set-labels:v1"',
        '[PASS] "set-labels:v1"',
        '[RUNNING] "kubeval:v1"',
        '[FAIL] "kubeval:v1"',
        "  Results:",
        "    [error] bad field",
        "  Stderr: boom",
        "d.app.v1 pushed",
    ]
    (body,) = sent
    assert body["metadata"]["resourceVersion"] == "5"
    assert body["spec"]["resources"] == {"Kptfile": "apiVersion: kpt.dev/v1\nkind: Kptfile\n"}


def test_progress_bar_only_on_a_terminal_and_for_long_batches() -> None:
    tty = StringIO()
    items = list(range(30))
    console = Console(file=tty, force_terminal=True, width=60)
    assert list(progress(items, "syncing", console=console)) == items
    assert "syncing" in tty.getvalue()
    piped = StringIO()
    console = Console(file=piped, force_terminal=False)
    assert list(progress(items, "syncing", console=console)) == items
    assert piped.getvalue() == ""
    assert list(progress(items[:3], "few", console=Console(file=tty, force_terminal=True))) == [
        0,
        1,
        2,
    ]


def test_flags_override_the_kubeconfig(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://from-config'}}]\n"
        "users: [{name: u, user: {token: config-token}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u, namespace: team}}]\n"
    )
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": []})

    transport = httpx.MockTransport(server)
    base = ("rpkg", "get", "--kubeconfig", str(config))
    runner = CliRunner()
    runner.invoke(main, list(base), obj=Ctl(transport=transport))
    runner.invoke(
        main,
        [*base, "-s", "http://flag", "--token", "flag-token", "-n", "other"],
        obj=Ctl(transport=transport),
    )
    first, second = seen
    assert str(first.url) == (
        "http://from-config/apis/porch.kpt.dev/v1alpha1/namespaces/team/packagerevisions"
    )
    assert first.headers["Authorization"] == "Bearer config-token"
    assert str(second.url).startswith("http://flag/apis/porch.kpt.dev/v1alpha1/namespaces/other/")
    assert second.headers["Authorization"] == "Bearer flag-token"


def test_missing_kubeconfig_is_exit_3(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["rpkg", "get", "--kubeconfig", str(tmp_path / "none")], obj=Ctl()
    )
    assert result.exit_code == 3
    assert result.stderr.startswith("error: no kubeconfig found")

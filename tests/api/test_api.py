"""Names, uids, the transition table and the JSON shapes of spec §1–2."""

from __future__ import annotations

import uuid

import pytest

from porch.api.lifecycle import TRANSITIONS, Endpoint, check_transition, parse_lifecycle
from porch.api.names import (
    compose_name,
    parse_name,
    revision_uid,
    validate_package_revision_names,
)
from porch.api.types import Lifecycle, PackageRevision, Repository
from porch.errors import BadRequest, Invalid


def test_compose_and_parse() -> None:
    assert compose_name("blue", "net/vpc", "v2-edit") == "blue.net.vpc.v2-edit"
    parsed = parse_name("blue.net.vpc.v2-edit")
    assert (parsed.repository, parsed.dotted_package, parsed.workspace) == (
        "blue",
        "net.vpc",
        "v2-edit",
    )
    parsed = parse_name("blue.pkg.v2.0.0")
    assert (parsed.repository, parsed.dotted_package, parsed.workspace) == ("blue", "pkg", "v2.0.0")
    for bad in ("", "a", "a.b", "a..b"):
        with pytest.raises(BadRequest):
            parse_name(bad)


def test_uid_is_uuid5_of_lowercased_key() -> None:
    expected = uuid.uuid5(
        uuid.UUID("aac71d91-5c67-456f-8fd2-902ef6da820e"),
        "packagerevision:porch.kpt.dev/v1alpha1/default/blue.app.ws1",
    )
    assert revision_uid("default", "blue.app.ws1") == str(expected)
    assert revision_uid("Default", "Blue.App.WS1") == str(expected)


@pytest.mark.parametrize(
    ("repo", "package", "ws"),
    [
        ("Blue", "app", "ws"),
        ("blue", "a//b", "ws"),
        ("blue", "/a", "ws"),
        ("blue", "a/../b", "ws"),
        ("blue", "App", "ws"),
        ("blue", "a" * 64, "ws"),
        ("blue", "app", ""),
        ("blue", "app", "ws_1"),
        ("blue", "app", "w" * 64),
        ("b" * 64, "app", "ws"),
    ],
)
def test_invalid_names(repo: str, package: str, ws: str) -> None:
    with pytest.raises(Invalid):
        validate_package_revision_names(repo, package, ws)


def test_valid_names() -> None:
    validate_package_revision_names("blue", "net/vpc", "v2-edit")
    validate_package_revision_names("blue", "a" * 63, "ws")


def test_transition_table_matches_spec() -> None:
    D, P, PUB, DP = tuple(Lifecycle)
    main = TRANSITIONS[Endpoint.MAIN]
    approval = TRANSITIONS[Endpoint.APPROVAL]
    assert (P, PUB) not in main and (P, PUB) in approval
    assert (D, PUB) not in main and (D, PUB) not in approval
    assert (PUB, DP) in main and (PUB, DP) in approval and (DP, PUB) in approval
    assert (P, D) in approval
    for old in Lifecycle:
        for new in Lifecycle:
            for endpoint in Endpoint:
                allowed = (old, new) in TRANSITIONS[endpoint]
                if allowed:
                    check_transition(old, new, endpoint)
                else:
                    with pytest.raises(Invalid):
                        check_transition(old, new, endpoint)
    assert parse_lifecycle("") is D
    with pytest.raises(Invalid, match="unsupported lifecycle value: Final"):
        parse_lifecycle("Final")


def test_package_revision_round_trip() -> None:
    body = {
        "apiVersion": "porch.kpt.dev/v1alpha1",
        "kind": "PackageRevision",
        "metadata": {"name": "blue.app.ws1", "namespace": "default", "labels": {"a": "b"}},
        "spec": {
            "packageName": "app",
            "repository": "blue",
            "workspaceName": "ws1",
            "revision": -1,
            "lifecycle": "Published",
            "tasks": [
                {
                    "type": "clone",
                    "clone": {"upstreamRef": {"upstreamRef": {"name": "up.pkg.v1"}}},
                }
            ],
            "readinessGates": [{"conditionType": "Ready"}],
        },
        "status": {"publishedBy": "me"},
    }
    pr = PackageRevision.from_dict(body)
    assert pr.spec.tasks[0].clone is not None
    assert pr.to_dict() == body
    with pytest.raises(TypeError):
        PackageRevision.from_dict({"spec": {"revision": "one"}})


def test_repository_defaults() -> None:
    repo = Repository.from_dict({"spec": {"git": {"repo": "x", "directory": "/a/"}}})
    assert repo.branch == "main"
    assert repo.directory == "a"


def test_function_result_uses_porch_json_names() -> None:
    """Porch's Result type tags ExecPath as ``exec`` (and kpt's result lists do the same)."""
    from porch.api._serde import from_dict, to_dict
    from porch.api.types import Result

    data = to_dict(Result(exec_path="/usr/local/bin/fn", exit_code=1))
    assert data["exec"] == "/usr/local/bin/fn" and "execPath" not in data
    assert from_dict(Result, {"exec": "./fn", "exitCode": 2}).exec_path == "./fn"

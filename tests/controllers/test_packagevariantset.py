"""PackageVariantSet fan-out against a real ``porch serve``, driven by the runner's passes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from porch.api.types import Lifecycle
from porch.client import CONFIG, CONFIG_V1ALPHA2, PorchClient
from porch.controllers import ControllerRunner, variant_name
from porch.controllers.packagevariantset import selector_matches
from porch.controllers.types import PVS_LABEL
from tests.controllers.conftest import Env, condition

DOWNSTREAMS = [f"site{i}" for i in range(10)]


def make_set(env: Env, name: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "config.porch.kpt.dev/v1alpha2",
        "kind": "PackageVariantSet",
        "metadata": {"name": name, "namespace": env.ns},
        "spec": spec,
    }
    return env.client.create_object(CONFIG_V1ALPHA2, "packagevariantsets", body)


def runner(env: Env) -> ControllerRunner:
    return ControllerRunner(lambda: PorchClient(env.served.url), namespace=env.ns)


def passes(r: ControllerRunner, n: int) -> list[bool]:
    """Run ``n`` passes; for each, whether anything was written. Errors fail the test."""
    out = []
    for _ in range(n):
        outcomes = r.reconcile_once()
        errors = [o for o in outcomes if o.error]
        assert not errors, errors
        out.append(any(o.wrote for o in outcomes))
    return out


def variants(env: Env) -> dict[str, dict[str, Any]]:
    return {pv["metadata"]["name"]: pv for pv in env.client.list_objects(CONFIG, "packagevariants")}


def test_new_upstream_reaches_ten_downstreams_without_duplicate_drafts(env: Env) -> None:
    up = env.upstream()
    for name in DOWNSTREAMS:
        env.repo(name, labels={"tier": "orphan" if name == "site9" else "edge"})
    pvs = make_set(
        env,
        "fleet",
        upstream={"repo": "up", "package": "base"},
        targets=[
            {
                "repositories": [{"name": n} for n in DOWNSTREAMS[:9]],
                "template": {
                    "labelExprs": [{"key": "site", "valueExpr": "repoDefault"}],
                    "packageContext": {
                        "dataExprs": [{"key": "site-name", "valueExpr": "target.repo + '-x'"}]
                    },
                },
            },
            {
                "repositorySelector": {"matchLabels": {"tier": "orphan"}},
                "template": {
                    "deletionPolicy": "orphan",
                    "downstream": {"packageExpr": "'edge-' + repository.labels['tier']"},
                },
            },
        ],
    )
    r = runner(env)
    first = passes(r, 3)
    assert first[0] and not first[-1]
    pvs_uid = pvs["metadata"]["uid"]
    have = variants(env)
    expected = {variant_name("fleet", n, "base") for n in DOWNSTREAMS[:9]}
    expected.add(variant_name("fleet", "site9", "edge-orphan"))
    assert set(have) == expected
    for pv in have.values():
        assert pv["metadata"]["labels"][PVS_LABEL] == pvs_uid
        assert pv["metadata"]["ownerReferences"][0]["uid"] == pvs_uid
        assert condition(pv, "Ready")["status"] == "True", pv.get("status")
    site3 = env.revisions("site3")
    assert [p.metadata.name for p in site3] == ["site3.base.packagevariant-1"]
    assert site3[0].metadata.labels["site"] == "site3"
    context = yaml.safe_load(env.files("site3.base.packagevariant-1")["package-context.yaml"])
    assert context["data"]["site-name"] == "site3-x"
    assert [p.metadata.name for p in env.revisions("site9")] == [
        "site9.edge-orphan.packagevariant-1"
    ]
    assert (
        condition(env.client.get_object(CONFIG_V1ALPHA2, "packagevariantsets", "fleet"), "Ready")[
            "reason"
        ]
        == "Reconciled"
    )

    # People publish the ten drafts; then the upstream publishes a new revision.
    for name in DOWNSTREAMS:
        [draft] = env.drafts(name)
        env.publish(draft.metadata.name)
    env.new_upstream_revision(up.metadata.name, "v2", "large")
    wrote = passes(r, 50)
    assert wrote[0] and not any(wrote[2:]), wrote
    for name in DOWNSTREAMS:
        revisions = env.revisions(name)
        drafts = [p for p in revisions if p.spec.lifecycle == Lifecycle.DRAFT]
        assert len(revisions) == 2 and len(drafts) == 1, [p.metadata.name for p in revisions]
        assert drafts[0].spec.tasks[0].type == "upgrade"
        data = yaml.safe_load(env.files(drafts[0].metadata.name)["cm.yaml"])["data"]
        assert data["size"] == "large"

    # Removing a target deletes its variant; each variant's deletionPolicy decides the rest.
    fleet = env.client.get_object(CONFIG_V1ALPHA2, "packagevariantsets", "fleet")
    fleet["spec"]["targets"][0]["repositories"] = [{"name": n} for n in DOWNSTREAMS[1:9]]
    fleet["spec"]["targets"] = fleet["spec"]["targets"][:1]
    env.client.update_object(CONFIG_V1ALPHA2, "packagevariantsets", fleet)
    passes(r, 3)
    have = variants(env)
    assert variant_name("fleet", "site0", "base") not in have
    assert variant_name("fleet", "site9", "edge-orphan") not in have
    assert len(have) == 8
    site0 = {p.metadata.name: p for p in env.revisions("site0")}
    assert site0["site0.base.packagevariant-1"].spec.lifecycle == Lifecycle.DELETION_PROPOSED
    assert "site0.base.packagevariant-2" not in site0  # the upgrade draft was deleted
    site9 = env.revisions("site9")
    assert len(site9) == 2 and all(p.metadata.owner_references == [] for p in site9)
    assert passes(r, 5) == [False] * 5


def test_deleting_the_set_deletes_its_variants(env: Env) -> None:
    env.upstream()
    env.repo("a")
    make_set(
        env,
        "gone",
        upstream={"repo": "up", "package": "base", "revision": 1},
        targets=[{"repositories": [{"name": "a", "packageNames": ["one", "two"]}]}],
    )
    r = runner(env)
    passes(r, 2)
    assert set(variants(env)) == {"gone-a-one", "gone-a-two"}
    env.client.delete_object(CONFIG_V1ALPHA2, "packagevariantsets", "gone")
    passes(r, 3)
    assert variants(env) == {}
    assert env.client.list_objects(CONFIG_V1ALPHA2, "packagevariantsets") == []
    assert env.revisions("a") == []


def test_set_validation_and_missing_upstream(env: Env) -> None:
    env.repo("a")
    make_set(
        env,
        "bad",
        upstream={"repo": "up", "package": "base"},
        targets=[
            {"repositories": [{"name": "a"}], "repositorySelector": {"matchLabels": {}}},
            {"objectSelector": {"apiVersion": "v1", "kind": "ConfigMap"}},
            {"repositories": [{"name": "a"}], "template": {"downstream": {"repoExpr": "1 +"}}},
        ],
    )
    make_set(
        env,
        "lost",
        upstream={"repo": "a", "package": "none"},
        targets=[{"repositories": [{"name": "a"}]}],
    )
    r = runner(env)
    outcomes = {o.name: o for o in r.reconcile_once()}
    bad = env.client.get_object(CONFIG_V1ALPHA2, "packagevariantsets", "bad")
    stalled = condition(bad, "Stalled")
    assert stalled["reason"] == "ValidationError"
    assert "exactly one of repositories" in stalled["message"]
    assert 'kind "ConfigMap" (v1) is not served' in stalled["message"]
    assert "invalid CEL expression" in stalled["message"]
    assert outcomes["lost"].error
    lost = env.client.get_object(CONFIG_V1ALPHA2, "packagevariantsets", "lost")
    assert condition(lost, "Stalled")["reason"] == "UpstreamNotFound"
    assert variants(env) == {}


def test_long_variant_names_are_hashed() -> None:
    name = variant_name("a" * 40, "repository-with-a-long-name", "package")
    assert len(name) == 63 and name[:54] == ("a" * 40 + "-repository-with-a-long-name")[:54]
    assert variant_name("s", "r", "nested/pkg") == "s-r-nested-pkg"


@pytest.mark.parametrize(
    ("selector", "labels", "match"),
    [
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
            {"a": "2"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {"a": "1"},
            False,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
    ],
)
def test_selector_matches(selector: dict[str, Any], labels: dict[str, str], match: bool) -> None:
    assert selector_matches(selector, labels) is match

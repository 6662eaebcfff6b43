"""The PackageVariant controller against a real ``porch serve`` (git repositories on disk)."""

from __future__ import annotations

import yaml

from porch.api.types import Lifecycle
from porch.client import CONFIG
from porch.controllers import PackageVariantReconciler
from porch.controllers.types import PV_FINALIZER
from tests.controllers.conftest import Env, condition

SET_LABELS = "ghcr.io/kptdev/krm-functions-catalog/set-labels:latest"


def reconcile(env: Env, name: str, times: int = 1) -> list[bool]:
    reconciler = PackageVariantReconciler(env.client)
    wrote = []
    for _ in range(times):
        outcome = reconciler.reconcile(env.get_variant(name))
        assert not outcome.error, outcome.error
        wrote.append(outcome.wrote)
    return wrote


def test_clone_mutate_and_fifty_quiet_loops(env: Env) -> None:
    up = env.upstream()
    env.repo("down")
    env.variant(
        "edge",
        upstream={"repo": "up", "package": "base"},
        downstream={"repo": "down", "package": "edge"},
        labels={"team": "blue"},
        annotations={"owner": "ops"},
        packageContext={"data": {"region": "eu-west"}},
        pipeline={"mutators": [{"name": "tag", "image": SET_LABELS, "configMap": {"env": "p"}}]},
    )
    wrote = reconcile(env, "edge", times=50)
    assert wrote[0] is True
    assert not any(wrote[1:]), "a reconcile with nothing to do must not write"

    revisions = env.revisions("down")
    assert [pr.metadata.name for pr in revisions] == ["down.edge.packagevariant-1"]
    draft = revisions[0]
    assert draft.spec.lifecycle == Lifecycle.DRAFT
    assert draft.metadata.labels["team"] == "blue"
    assert draft.metadata.annotations["owner"] == "ops"
    pv = env.get_variant("edge")
    [owner] = draft.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "PackageVariant",
        "edge",
        pv["metadata"]["uid"],
        True,
    )
    assert draft.spec.tasks[0].type == "clone"
    assert draft.status.upstream_lock is not None and draft.status.upstream_lock.git is not None
    assert draft.status.upstream_lock.git.ref == f"base/v{up.spec.revision}"

    files = env.files(draft.metadata.name)
    context = yaml.safe_load(files["package-context.yaml"])
    assert context["data"]["region"] == "eu-west"
    kptfile = yaml.safe_load(files["Kptfile"])
    assert [f["name"] for f in kptfile["pipeline"]["mutators"]] == ["PackageVariant.edge.tag.0"]
    assert yaml.safe_load(files["cm.yaml"])["metadata"]["labels"] == {"env": "p"}

    assert PV_FINALIZER in pv["metadata"]["finalizers"]
    assert condition(pv, "Ready")["status"] == "True"
    assert condition(pv, "Ready")["reason"] == "NoErrors"
    assert condition(pv, "Stalled")["status"] == "False"
    [target] = pv["status"]["downstreamTargets"]
    assert target["name"] == "down.edge.packagevariant-1"
    assert target["renderStatus"]["result"]["items"][0]["image"] == SET_LABELS


def test_upgrade_when_upstream_publishes_then_one_draft_only(env: Env) -> None:
    up = env.upstream()
    env.repo("down")
    env.variant(
        "v",
        upstream={"repo": "up", "package": "base"},
        downstream={"repo": "down", "package": "app"},
    )
    reconcile(env, "v")
    env.publish("down.app.packagevariant-1")
    assert reconcile(env, "v", times=3) == [False, False, False]

    v2 = env.new_upstream_revision(up.metadata.name, "v2", "large")
    assert v2.spec.revision == 2
    wrote = reconcile(env, "v", times=20)
    assert wrote[0] and not any(wrote[1:])
    [draft] = env.drafts("down")
    assert draft.metadata.name == "down.app.packagevariant-2"
    upgrade = draft.spec.tasks[0]
    assert upgrade.type == "upgrade" and upgrade.upgrade is not None
    assert upgrade.upgrade.old_upstream_ref is not None
    assert upgrade.upgrade.old_upstream_ref.name == up.metadata.name
    assert upgrade.upgrade.local_package_revision_ref is not None
    assert upgrade.upgrade.local_package_revision_ref.name == "down.app.packagevariant-1"
    assert yaml.safe_load(env.files(draft.metadata.name)["cm.yaml"])["data"]["size"] == "large"
    assert draft.status.upstream_lock is not None and draft.status.upstream_lock.git is not None
    assert draft.status.upstream_lock.git.ref == "base/v2"

    # While that draft waits for a human, a newer upstream cannot start a second one.
    env.new_upstream_revision(v2.metadata.name, "v3", "huge")
    reconciler = PackageVariantReconciler(env.client)
    for _ in range(10):
        outcome = reconciler.reconcile(env.get_variant("v"))
        assert "publish or delete it" in outcome.error
    assert [d.metadata.name for d in env.drafts("down")] == ["down.app.packagevariant-2"]
    pv = env.get_variant("v")
    assert condition(pv, "Ready")["status"] == "False"
    assert "based on an older upstream" in condition(pv, "Ready")["message"]


def test_a_stale_view_gets_409_not_a_second_draft(env: Env) -> None:
    env.upstream()
    env.repo("down")
    env.variant(
        "race",
        upstream={"repo": "up", "package": "base"},
        downstream={"repo": "down", "package": "p"},
    )
    reconcile(env, "race")
    # A second controller whose list is stale (it does not see the draft yet) races the first.
    seen = [pr for pr in env.client.list_package_revisions() if pr.spec.repository != "down"]
    stale = PackageVariantReconciler(env.client).reconcile(env.get_variant("race"), prs=seen)
    assert "already exists" in stale.error
    assert len(env.revisions("down")) == 1
    pv = env.get_variant("race")
    assert condition(pv, "Ready")["status"] == "False"
    reconcile(env, "race")
    assert condition(env.get_variant("race"), "Ready")["status"] == "True"


def test_spec_change_on_published_downstream_makes_one_edit_draft(env: Env) -> None:
    env.upstream()
    env.repo("down")
    env.variant(
        "ed",
        upstream={"repo": "up", "package": "base"},
        downstream={"repo": "down", "package": "p"},
    )
    reconcile(env, "ed")
    env.publish("down.p.packagevariant-1")
    pv = env.get_variant("ed")
    pv["spec"]["packageContext"] = {"data": {"zone": "z1"}}
    env.client.update_object(CONFIG, "packagevariants", pv)
    wrote = reconcile(env, "ed", times=10)
    assert wrote[0] and not any(wrote[1:])
    [draft] = env.drafts("down")
    assert draft.spec.tasks[0].type == "edit"
    context = yaml.safe_load(env.files(draft.metadata.name)["package-context.yaml"])
    assert context["data"]["zone"] == "z1"


def test_invalid_spec_is_stalled_with_every_problem(env: Env) -> None:
    env.variant(
        "bad",
        upstream={"repo": "up"},
        downstream={"repo": "down", "package": "p"},
        adoptionPolicy="adoptSome",
        packageContext={"data": {"name": "x"}},
        injectors=[{"kind": "ConfigMap", "name": "cfg"}],
    )
    outcome = PackageVariantReconciler(env.client).reconcile(env.get_variant("bad"))
    pv = env.get_variant("bad")
    stalled = condition(pv, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "ValidationError")
    for text in (
        "missing required field spec.upstream.package",
        'spec.adoptionPolicy "adoptSome"',
        'cannot use the key "name"',
        'injector kind "ConfigMap" is not served by this Porch API server',
    ):
        assert text in stalled["message"] and text in outcome.error
    assert condition(pv, "Ready")["status"] == "False"


def test_missing_upstream_is_reported_not_stalled(env: Env) -> None:
    env.repo("down")
    env.variant(
        "lost",
        upstream={"repo": "down", "package": "nope"},
        downstream={"repo": "down", "package": "p"},
    )
    PackageVariantReconciler(env.client).reconcile(env.get_variant("lost"))
    ready = condition(env.get_variant("lost"), "Ready")
    assert ready["status"] == "False" and "not found" in ready["message"]
    assert env.revisions("down") == []


def test_deletion_policies(env: Env) -> None:
    env.upstream()
    env.repo("down")
    for name, policy in (("del", "delete"), ("orph", "orphan"), ("pub", "delete")):
        env.variant(
            name,
            upstream={"repo": "up", "package": "base"},
            downstream={"repo": "down", "package": name},
            deletionPolicy=policy,
        )
        reconcile(env, name)
    env.publish("down.pub.packagevariant-1")
    for name in ("del", "orph", "pub"):
        env.client.delete_object(CONFIG, "packagevariants", name)
        assert env.get_variant(name)["metadata"]["deletionTimestamp"]
        reconcile(env, name)
    for name in ("del", "orph", "pub"):
        assert name not in {
            pv["metadata"]["name"] for pv in env.client.list_objects(CONFIG, "packagevariants")
        }
    left = {pr.metadata.name: pr for pr in env.revisions("down")}
    assert "down.del.packagevariant-1" not in left
    orphan = left["down.orph.packagevariant-1"]
    assert orphan.spec.lifecycle == Lifecycle.DRAFT and orphan.metadata.owner_references == []
    assert left["down.pub.packagevariant-1"].spec.lifecycle == Lifecycle.DELETION_PROPOSED


def test_adopt_existing(env: Env) -> None:
    env.upstream()
    env.repo("down")
    env.variant(
        "first",
        upstream={"repo": "up", "package": "base"},
        downstream={"repo": "down", "package": "p"},
        deletionPolicy="orphan",
    )
    reconcile(env, "first")
    env.client.delete_object(CONFIG, "packagevariants", "first")
    reconcile(env, "first")  # orphans the draft
    env.variant(
        "ignore",
        upstream={"repo": "up", "package": "base"},
        downstream={"repo": "down", "package": "p"},
    )
    outcome = PackageVariantReconciler(env.client).reconcile(env.get_variant("ignore"))
    assert "already exists" in outcome.error  # adoptNone: the package is someone else's
    env.variant(
        "adopt",
        upstream={"repo": "up", "package": "base"},
        downstream={"repo": "down", "package": "p"},
        adoptionPolicy="adoptExisting",
        labels={"adopted": "yes"},
    )
    reconcile(env, "adopt", times=3)
    [pr] = env.revisions("down")
    assert pr.metadata.labels["adopted"] == "yes"
    assert [o.name for o in pr.metadata.owner_references] == ["adopt"]


def test_injection_from_a_repository(env: Env) -> None:
    up = env.upstream()
    env.repo("down")
    env.repo("source-repo", labels={"x": "y"})
    point = (
        "apiVersion: config.porch.kpt.dev/v1alpha1\nkind: Repository\nmetadata:\n"
        "  name: target\n  annotations:\n    kpt.dev/config-injection: required\n"
        "spec: {}\n"
    )
    env.new_upstream_revision(up.metadata.name, "v2", "small", {"repo.yaml": point})
    env.variant(
        "inj",
        upstream={"repo": "up", "package": "base"},
        downstream={"repo": "down", "package": "p"},
        injectors=[{"kind": "Repository", "name": "source-repo"}],
    )
    reconcile(env, "inj", times=3)
    [draft] = env.drafts("down")
    out = env.files(draft.metadata.name)
    injected = yaml.safe_load(out["repo.yaml"])
    assert injected["spec"]["git"]["branch"] == "main"
    assert injected["metadata"]["annotations"]["kpt.dev/injected-resource"] == "source-repo"
    kptfile = yaml.safe_load(out["Kptfile"])
    gates = [g["conditionType"] for g in kptfile["info"]["readinessGates"]]
    assert "config.injection.Repository.target" in gates
    conds = {c["type"]: c for c in kptfile["status"]["conditions"]}
    assert conds["config.injection.Repository.target"]["reason"] == "ConfigInjected"

"""Readiness gates enforced at approval, and per-repository approval policies (docs/approval.md).

Every scenario runs over the memory and the git backend (the ``harness`` fixture).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from porch.api.lifecycle import Endpoint
from porch.api.types import (
    ApprovalPolicy,
    Condition,
    GitRepositorySpec,
    ObjectMeta,
    PackageRevision,
    ReadinessGate,
    Repository,
    RepositorySpec,
)
from porch.engine.rules import validate_approval_policy
from porch.errors import Forbidden, Invalid
from tests.engine.conftest import NS, Harness

TEAM = ("team-a", "system:authenticated")
RELEASE = ("release", "system:authenticated")


def register(harness: Harness, policy: ApprovalPolicy | None, name: str = "blue") -> Repository:
    repo = Repository(
        metadata=ObjectMeta(name=name, namespace=NS),
        spec=RepositorySpec(
            type="git",
            git=GitRepositorySpec(
                repo=harness.backend.repo_url(name), branch="main", create_branch=True
            ),
            approval_policy=policy,
        ),
    )
    return harness.engine.register_repository(repo)


def move(
    harness: Harness,
    name: str,
    lifecycle: str,
    user: str | None,
    groups: Sequence[str] = TEAM,
    *,
    approval: bool = False,
) -> PackageRevision:
    current = harness.engine.get(NS, name)
    current.spec.lifecycle = lifecycle
    return harness.engine.update(
        current,
        endpoint=Endpoint.APPROVAL if approval else Endpoint.MAIN,
        user=user,
        groups=groups,
    )


def approve(
    harness: Harness, name: str, user: str | None, groups: Sequence[str] = RELEASE
) -> PackageRevision:
    return move(harness, name, "Published", user, groups, approval=True)


def proposed(harness: Harness, user: str = "alice", **spec: object) -> str:
    pr = harness.create("app", "ws1", **spec)
    move(harness, pr.metadata.name, "Proposed", user)
    return pr.metadata.name


def users(pr: PackageRevision) -> list[str]:
    return [a.user for a in pr.status.approvals]


# --- readiness gates -----------------------------------------------------------------------------


def test_unready_gate_is_refused_with_the_gate_named(harness: Harness) -> None:
    register(harness, None)
    pr = harness.create(
        "app", "ws1", readiness_gates=[ReadinessGate("tested"), ReadinessGate("ok")]
    )
    draft = harness.engine.get(NS, pr.metadata.name)
    draft.status.conditions = [
        Condition("tested", "False", reason="TestsFailing"),
        Condition("ok", "True"),
    ]
    harness.engine.update(draft)
    move(harness, pr.metadata.name, "Proposed", "alice")
    with pytest.raises(Invalid) as refused:
        approve(harness, pr.metadata.name, "bob")
    assert refused.value.code == 422
    assert str(refused.value) == (
        'readiness conditions not met for blue.app.ws1: gate "tested" has status "False"'
        " (TestsFailing)"
    )
    assert [c.field for c in refused.value.details.causes] == ["status.conditions[tested]"]
    after = harness.engine.get(NS, pr.metadata.name)
    assert (after.spec.lifecycle, after.status.approvals) == ("Proposed", [])

    # Back to Draft, make the gate true, propose again: now it publishes.
    move(harness, pr.metadata.name, "Draft", "alice", approval=True)
    draft = harness.engine.get(NS, pr.metadata.name)
    draft.status.conditions = [Condition("tested", "True"), Condition("ok", "True")]
    harness.engine.update(draft)
    move(harness, pr.metadata.name, "Proposed", "alice")
    published = approve(harness, pr.metadata.name, "bob")
    assert (published.spec.lifecycle, published.spec.revision) == ("Published", 1)


def test_gate_without_condition_is_named(harness: Harness) -> None:
    register(harness, None)
    name = proposed(harness, readiness_gates=[ReadinessGate("deployed")])
    with pytest.raises(Invalid, match='gate "deployed" has no condition'):
        approve(harness, name, "bob")


def test_no_gates_approve_as_before_and_the_approver_is_recorded(harness: Harness) -> None:
    register(harness, None)
    name = proposed(harness)
    # No policy: one approval publishes, even the proposer's.
    published = approve(harness, name, "alice")
    assert published.spec.lifecycle == "Published"
    assert published.status.proposed_by == "alice"
    assert users(published) == ["alice"]
    assert published.status.approvals[0].time


# --- approval policy -----------------------------------------------------------------------------


def test_proposer_may_not_approve_their_own_revision(harness: Harness) -> None:
    register(harness, ApprovalPolicy(proposer_may_approve=False))
    name = proposed(harness, "alice")
    assert harness.engine.get(NS, name).status.proposed_by == "alice"
    with pytest.raises(Forbidden) as refused:
        approve(harness, name, "alice")
    assert refused.value.code == 403
    assert str(refused.value) == (
        'packagerevisions.porch.kpt.dev "blue.app.ws1" is forbidden: User "alice" proposed this'
        ' revision, and the approval policy of repository "blue" does not let the proposer'
        " approve it"
    )
    assert harness.engine.get(NS, name).spec.lifecycle == "Proposed"
    published = approve(harness, name, "bob")
    assert published.spec.lifecycle == "Published"
    assert (published.status.proposed_by, users(published)) == ("alice", ["bob"])


def test_too_few_approvals_keep_it_proposed_until_enough_distinct_users(
    harness: Harness,
) -> None:
    register(harness, ApprovalPolicy(min_approvals=2))
    name = proposed(harness, "alice")
    first = approve(harness, name, "alice")
    assert (first.spec.lifecycle, first.spec.revision, users(first)) == ("Proposed", 0, ["alice"])
    with pytest.raises(Forbidden, match=r'"alice" has already approved this revision \(1 of 2'):
        approve(harness, name, "alice")
    # The record survives a restart (it lives in the store, beside the other metadata).
    harness.restart()
    assert users(harness.engine.get(NS, name)) == ["alice"]
    # A metadata update of the Proposed revision keeps it too.
    current = harness.engine.get(NS, name)
    current.metadata.labels["note"] = "x"
    assert users(harness.engine.update(current, user="carol")) == ["alice"]
    published = approve(harness, name, "bob")
    assert (published.spec.lifecycle, published.spec.revision) == ("Published", 1)
    assert users(published) == ["alice", "bob"]
    assert published.status.published_by == "bob"
    assert users(harness.engine.get(NS, name)) == ["alice", "bob"]


def test_approvers_limited_to_groups(harness: Harness) -> None:
    register(harness, ApprovalPolicy(approver_groups=["release", "ops"]))
    name = proposed(harness, "alice")
    with pytest.raises(Forbidden) as refused:
        approve(harness, name, "dave", TEAM)
    assert str(refused.value).endswith(
        'User "dave" is not in an approver group of repository "blue" (release, ops)'
    )
    for anonymous in (None, "system:anonymous"):
        with pytest.raises(Forbidden, match="requires an authenticated approver"):
            approve(harness, name, anonymous, ("system:unauthenticated",))
    assert approve(harness, name, "erin", ("ops",)).spec.lifecycle == "Published"


def test_rejection_clears_the_approvals_and_a_new_proposal_records_its_proposer(
    harness: Harness,
) -> None:
    register(harness, ApprovalPolicy(min_approvals=2, proposer_may_approve=False))
    name = proposed(harness, "alice")
    assert users(approve(harness, name, "bob")) == ["bob"]
    rejected = move(harness, name, "Draft", "carol", approval=True)
    assert (rejected.status.proposed_by, rejected.status.approvals) == ("", [])
    again = move(harness, name, "Proposed", "bob")
    assert (again.status.proposed_by, again.status.approvals) == ("bob", [])
    with pytest.raises(Forbidden, match="proposed this revision"):
        approve(harness, name, "bob")
    assert approve(harness, name, "alice").spec.lifecycle == "Proposed"
    assert approve(harness, name, "carol").spec.lifecycle == "Published"


def test_policy_change_applies_to_the_next_approval(harness: Harness) -> None:
    repo = register(harness, ApprovalPolicy(min_approvals=3))
    name = proposed(harness, "alice")
    approve(harness, name, "bob")
    approve(harness, name, "carol")
    assert harness.engine.get(NS, name).spec.lifecycle == "Proposed"
    assert repo.spec.approval_policy is not None
    repo.spec.approval_policy.min_approvals = 2
    register(harness, repo.spec.approval_policy)
    # Two recorded approvals meet the lowered bar; the next eligible approval publishes.
    assert users(harness.engine.get(NS, name)) == ["bob", "carol"]
    published = approve(harness, name, "dave")
    assert published.spec.lifecycle == "Published"
    assert users(published) == ["bob", "carol", "dave"]


def test_removing_the_policy_lets_the_next_approval_publish(harness: Harness) -> None:
    register(harness, ApprovalPolicy(min_approvals=2, proposer_may_approve=False))
    name = proposed(harness, "alice")
    approve(harness, name, "bob")
    register(harness, None)
    published = approve(harness, name, "bob")
    assert published.spec.lifecycle == "Published"
    assert users(published) == ["bob"]  # one entry per user


def test_deletion_flip_is_not_subject_to_the_policy(harness: Harness) -> None:
    register(harness, ApprovalPolicy(proposer_may_approve=False))
    name = proposed(harness, "alice")
    approve(harness, name, "bob")
    move(harness, name, "DeletionProposed", "alice")
    back = move(harness, name, "Published", "alice", approval=True)
    assert back.spec.lifecycle == "Published"
    assert users(back) == ["bob"]


# --- policy validation (pure) ---------------------------------------------------------------


def test_policy_defaults_are_filled_in() -> None:
    assert validate_approval_policy({}) == {"minApprovals": 1, "proposerMayApprove": True}
    assert validate_approval_policy(None) is None
    given = {"minApprovals": 2, "proposerMayApprove": False, "approverGroups": ["a", "b"]}
    assert validate_approval_policy(given) == given


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"minApprovals": 0}, "spec.approvalPolicy.minApprovals: Invalid value: 0: must be"),
        ({"minApprovals": "2"}, "spec.approvalPolicy.minApprovals: Invalid value: '2': must be"),
        ({"minApprovals": True}, "minApprovals: Invalid value: True: must be an integer"),
        ({"proposerMayApprove": "no"}, "proposerMayApprove: Invalid value: 'no': must be a"),
        ({"approverGroups": "ops"}, "approverGroups: Invalid value: 'ops': must be a list"),
        ({"approverGroups": ["ops", ""]}, r"approverGroups\[1\]: Invalid value: ''"),
        ({"approverGroups": ["ops", "ops"]}, r'approverGroups\[1\]: Duplicate value: "ops"'),
        ({"minApproval": 2}, "spec.approvalPolicy.minApproval: Forbidden: unknown field"),
        ([1], "spec.approvalPolicy: Invalid value: \\[1\\]: must be an object"),
    ],
)
def test_bad_policies_are_refused(policy: object, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        validate_approval_policy(policy)

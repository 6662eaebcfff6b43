"""The engine's lifecycle seen through the git CLI: refs, tags, trailers and trees per step."""

from __future__ import annotations

import json

import pytest

from tests.engine.conftest import NS, Harness


def _refs(h: Harness) -> dict[str, str]:
    out = h.backend.git("blue", "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ") for line in out.splitlines())


def _trailer(h: Harness, commit: str) -> dict[str, object]:
    body = h.backend.git("blue", "log", "-1", "--format=%B", commit)
    lines = [line for line in body.splitlines() if line.startswith("kpt:")]
    assert len(lines) == 1, body
    parsed: dict[str, object] = json.loads(lines[0][len("kpt:") :])
    return parsed


def test_lifecycle_in_git(harness: Harness) -> None:
    if harness.backend.kind != "git":
        pytest.skip("git layout only")
    h = harness
    h.register(directory="")
    pr = h.create("net/vpc", "ws1")
    refs = _refs(h)
    draft = refs["refs/heads/drafts/net/vpc/ws1"]
    assert h.backend.git("blue", "log", "-1", "--format=%s", draft).strip() == (
        "Creating new empty revision"
    )
    assert _trailer(h, draft) == {
        "package": "net/vpc",
        "workspaceName": "ws1",
        "revision": "0",
        "task": {"type": "init", "init": {"description": "net/vpc description"}},
    }
    tree = h.backend.git("blue", "ls-tree", "-r", "--name-only", draft).split()
    assert {"net/vpc/Kptfile", "net/vpc/README.md", "net/vpc/package-context.yaml"} <= set(tree)

    h.set_lifecycle(pr, "Proposed")
    refs = _refs(h)
    assert "refs/heads/drafts/net/vpc/ws1" not in refs
    proposed = refs["refs/heads/proposed/net/vpc/ws1"]
    assert proposed == draft  # nothing to re-render: the branch is renamed (spec §5.1)

    h.set_lifecycle(pr, "Published", approval=True)
    refs = _refs(h)
    assert not any(r.startswith("refs/heads/proposed/") for r in refs)
    tag = refs["refs/tags/net/vpc/v1"]
    assert refs["refs/heads/main"] == tag
    parents = h.backend.git("blue", "log", "-1", "--format=%P", tag).split()
    assert parents[1] == proposed and len(parents) == 2
    assert h.backend.git("blue", "log", "-1", "--format=%s", tag).strip() == (
        "Approving package revision net/vpc/1"
    )
    on_main = h.backend.git("blue", "ls-tree", "-r", "--name-only", "main").split()
    assert "net/vpc/Kptfile" in on_main

    h.set_lifecycle(pr, "DeletionProposed")
    assert _refs(h)["refs/heads/deletionProposed/net/vpc/v1"] == tag
    h.set_lifecycle(pr, "Published", approval=True)
    assert "refs/heads/deletionProposed/net/vpc/v1" not in _refs(h)
    h.set_lifecycle(pr, "DeletionProposed", approval=True)
    h.engine.delete(NS, pr.metadata.name)
    refs = _refs(h)
    assert "refs/tags/net/vpc/v1" not in refs
    assert "refs/heads/deletionProposed/net/vpc/v1" not in refs
    # the package stays on the branch: its placeholder revision is still there
    assert h.engine.get(NS, "blue.net.vpc.main").spec.revision == -1

"""Ref names, commit messages and path checks of the git adapter (spec §5.1, §5.2, §1.4)."""

from __future__ import annotations

import pytest

from porch.api.types import Lifecycle
from porch.errors import BadRequest, Invalid
from porch.repository.git import layout, trailers


@pytest.mark.parametrize(
    ("version", "revision"),
    [("v3", 3), ("7", 7), ("v2.0.0", -1), ("main", -1), ("v", -1), ("v10", 10)],
)
def test_revision_from_tag_version(version: str, revision: int) -> None:
    assert layout.parse_revision(version) == revision


def test_ref_names() -> None:
    fp = layout.full_path("/blueprints/", "net/vpc")
    assert fp == "blueprints/net/vpc"
    assert layout.lifecycle_branch(Lifecycle.DRAFT, fp, "ws") == "drafts/blueprints/net/vpc/ws"
    assert layout.lifecycle_branch(Lifecycle.PROPOSED, fp, "ws") == "proposed/blueprints/net/vpc/ws"
    assert layout.tag_name(fp, 4) == "blueprints/net/vpc/v4"
    assert layout.deletion_marker(fp, 4, "ws") == "deletionProposed/blueprints/net/vpc/v4"
    assert layout.deletion_marker(fp, -1, "main") == "deletionProposed/blueprints/net/vpc/main"
    assert layout.package_of("blueprints", fp) == "net/vpc"
    assert layout.package_of("blueprints", "blueprints2/x") is None
    assert layout.package_of("", "a/b") == "a/b"
    assert layout.split_workspace("a/b/ws") == ("a/b", "ws")
    assert layout.split_workspace("nows") is None


@pytest.mark.parametrize(
    "path", ["/abs", "../up", "a/../b", "a//b", ".git/config", "a/.git", "nul\0x", "", "a/"]
)
def test_bad_file_paths_are_rejected(path: str) -> None:
    with pytest.raises(BadRequest):
        layout.encode_files({"Kptfile": "k", path: "x"})


def test_missing_kptfile_is_invalid() -> None:
    with pytest.raises(Invalid, match="package must contain Kptfile at root"):
        layout.encode_files({"sub/Kptfile": "k"})


def test_file_and_directory_of_same_name_clash() -> None:
    with pytest.raises(BadRequest):
        layout.encode_files({"Kptfile": "k", "a": "x", "a/b": "y"})


@pytest.mark.parametrize(
    ("task", "subject"),
    [
        ({"type": "init"}, "Creating new empty revision"),
        ({"type": "clone"}, "Creating new revision by cloning"),
        ({"type": "edit"}, "Creating new revision by copying previous revision"),
        ({"type": "upgrade"}, "Upgrading revision"),
        ({"type": "render"}, "Rendering package"),
        (None, "Intermediate commit"),
        ({"type": "push"}, "Intermediate commit: push"),
    ],
)
def test_subject_per_task(task: dict[str, str] | None, subject: str) -> None:
    assert trailers.subject_for(task) == subject


def test_message_format_and_round_trip() -> None:
    task = {"type": "init", "init": {"description": "d"}}
    message = trailers.revision_message("a/b", "ws", task)
    assert message == (
        "Creating new empty revision\n\n"
        'kpt:{"package":"a/b","workspaceName":"ws","revision":"0",'
        '"task":{"type":"init","init":{"description":"d"}}}\n'
    )
    (ann,) = trailers.parse_annotations(message)
    assert (ann.package, ann.workspace, ann.revision, ann.task) == ("a/b", "ws", "0", task)


def test_parse_accepts_several_and_skips_malformed() -> None:
    message = (
        'x\n\nkpt:{"package":"a"}\n  kpt:not json\nkpt:[1]\nkpt:{"package":"b","revision":3}\n'
    )
    found = trailers.parse_annotations(message)
    assert [(a.package, a.revision) for a in found] == [("a", ""), ("b", "3")]


def test_legacy_trailer_matches_workspace_by_revision() -> None:
    (ann,) = trailers.parse_annotations('kpt:{"package":"p","revision":"v1"}')
    assert ann.matches("p", "v1")
    assert not ann.matches("p", "v2")
    assert not ann.matches("q", "v1")

"""The git adapter against a remote over smart HTTP (spec §5.1 mirror, §5.5 credentials)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from porch.api.types import Lifecycle
from porch.errors import AlreadyExists, Conflict, Unavailable
from porch.repository.git import GitCredentials, GitRepository, set_network_timeouts
from porch.repository.git.remote import mirror_path
from porch.testing.git_repos import (
    JANE,
    KPTFILE,
    FsckRegistry,
    git,
    key,
    new_bare,
    new_draft,
    publish,
    refs,
)
from porch.testing.git_server import GitHttpServer

AUTH_MODES = {
    "basic": ({"basic": ("alice", "s3cret-pass")}, GitCredentials("alice", "s3cret-pass")),
    "bearer": ({"bearer": "t0ken-value"}, GitCredentials(bearer_token="t0ken-value")),
}


@pytest.fixture
def origin(tmp_path: Path, fsck: FsckRegistry) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    return fsck.add(new_bare(root / "repo.git"))


@pytest.fixture(params=sorted(AUTH_MODES))
def server(request: pytest.FixtureRequest, origin: Path) -> Iterator[tuple[GitHttpServer, str]]:
    options, _ = AUTH_MODES[request.param]
    with GitHttpServer(origin.parent, **options) as srv:  # type: ignore[arg-type]
        yield srv, request.param


def _open(
    url: str, tmp_path: Path, fsck: FsckRegistry, mirror: str, creds: GitCredentials | None
) -> GitRepository:
    mirrors = tmp_path / mirror
    repo = GitRepository(url, mirror_dir=mirrors, credentials=creds, create_branch=True)
    fsck.add(mirror_path(mirrors, url))
    return repo


def test_lifecycle_over_http(
    server: tuple[GitHttpServer, str], origin: Path, tmp_path: Path, fsck: FsckRegistry
) -> None:
    srv, mode = server
    creds = AUTH_MODES[mode][1]
    url = srv.repo_url("repo.git")
    repo = _open(url, tmp_path, fsck, "m1", creds)
    draft = new_draft(repo, "net/vpc", "ws").info
    assert draft is not None
    assert refs(origin)["refs/heads/drafts/net/vpc/ws"] == draft.commit
    published = publish(repo, draft, 1)
    remote_refs = refs(origin)
    assert remote_refs["refs/tags/net/vpc/v1"] == remote_refs["refs/heads/main"]
    assert remote_refs["refs/heads/main"] == published.commit
    assert "refs/heads/proposed/net/vpc/ws" not in remote_refs
    assert len(git(origin, "rev-list", "--parents", "-n1", published.commit).split()) == 3
    marked = repo.set_lifecycle(published, Lifecycle.DELETION_PROPOSED).info
    assert refs(origin)["refs/heads/deletionProposed/net/vpc/v1"] == published.commit
    # The mirror keeps origin's branches as remote-tracking refs only.
    mirror = mirror_path(tmp_path / "m1", url)
    assert not [n for n in refs(mirror) if n.startswith("refs/heads/")]
    other = _open(url, tmp_path, fsck, "m2", creds)
    assert sorted(map(key, other.list_revisions())) == sorted(map(key, repo.list_revisions()))
    assert marked is not None
    repo.delete(marked)
    assert "refs/tags/net/vpc/v1" not in refs(origin)
    if mode == "bearer":
        assert {r.authorization for r in srv.requests} == {"Bearer t0ken-value"}


def test_concurrent_writers_through_two_mirrors(
    origin: Path, tmp_path: Path, fsck: FsckRegistry
) -> None:
    with GitHttpServer(origin.parent, basic=("alice", "pw")) as srv:
        creds = GitCredentials("alice", "pw")
        url = srv.repo_url("repo.git")
        mine = _open(url, tmp_path, fsck, "a", creds)
        theirs = _open(url, tmp_path, fsck, "b", creds)
        base = new_draft(mine, "pkg", "ws").info
        assert base is not None
        theirs.fetch()
        with pytest.raises(AlreadyExists):
            new_draft(theirs, "pkg", "ws")
        (their_base,) = [i for i in theirs.list_revisions() if i.ref == "drafts/pkg/ws"]
        files = {"Kptfile": KPTFILE, "t.yaml": "t\n"}
        theirs.write(
            package="pkg",
            workspace="ws",
            files=files,
            lifecycle=Lifecycle.DRAFT,
            task=None,
            author=JANE,
            base=their_base,
        )
        with pytest.raises(Conflict):
            mine.delete(base)
        # Publishing through a stale mirror fetches and builds on the real head of main.
        intruder = new_draft(theirs, "other", "ws").info
        assert intruder is not None
        intruder_published = publish(theirs, intruder, 1)
        mine.fetch()
        (fresh,) = [i for i in mine.list_revisions() if i.ref == "drafts/pkg/ws"]
        published = publish(mine, fresh, 1)
        parents = git(origin, "rev-list", "--parents", "-n1", published.commit).split()
        assert parents[1] == intruder_published.commit


def test_wrong_credentials_are_reported_without_secrets(
    server: tuple[GitHttpServer, str], tmp_path: Path
) -> None:
    srv, mode = server
    wrong = GitCredentials("alice", "wrong-pass", bearer_token="wrong-token")
    if mode == "basic":
        wrong = GitCredentials("alice", "wrong-pass")
    repo = GitRepository(srv.repo_url("repo.git"), mirror_dir=tmp_path / "m", credentials=wrong)
    with pytest.raises(Unavailable) as caught:
        repo.fetch()
    message = str(caught.value)
    assert "authentication failed" in message
    assert "wrong-pass" not in message and "wrong-token" not in message
    anonymous = GitRepository(srv.repo_url("repo.git"), mirror_dir=tmp_path / "anon")
    with pytest.raises(Unavailable, match="no credentials"):
        anonymous.list_revisions()


@pytest.mark.parametrize("creds", [None, GitCredentials(bearer_token="secret-tok")])
def test_unreachable_remote_is_unavailable_quickly(
    tmp_path: Path, creds: GitCredentials | None
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/repo.git"
    repo = GitRepository(url, mirror_dir=tmp_path / "m", credentials=creds)
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        repo.fetch()
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith(f"cannot fetch from git repository {url}: ")
    assert "refused" in message.lower() and "secret-tok" not in message


def test_server_errors_and_hangs(origin: Path, tmp_path: Path) -> None:
    with GitHttpServer(origin.parent) as srv:
        srv.set_fault("500")
        repo = GitRepository(srv.repo_url("repo.git"), mirror_dir=tmp_path / "m")
        with pytest.raises(Unavailable, match="500"):
            repo.fetch()
        srv.set_fault("hang")
        previous = set_network_timeouts(2_000, 1_000)
        try:
            with pytest.raises(Unavailable):
                repo.fetch()
        finally:
            set_network_timeouts(*previous)
        assert srv.hanging.is_set()
        srv.set_fault(None)
        repo.fetch()


def test_bearer_token_not_sent_across_a_redirect(origin: Path, tmp_path: Path) -> None:
    with GitHttpServer(origin.parent, bearer="tok") as elsewhere:
        target = elsewhere.url.replace("127.0.0.1", "localhost")
        with GitHttpServer(origin.parent, bearer="tok", redirect_to=target) as srv:
            creds = GitCredentials(bearer_token="tok")
            repo = GitRepository(
                srv.repo_url("repo.git"), mirror_dir=tmp_path / "m", credentials=creds
            )
            with pytest.raises(Unavailable):
                repo.fetch()
    assert srv.requests, "the client never reached the redirecting server"
    assert not [r for r in elsewhere.requests if r.authorization]


def test_file_url_remote(origin: Path, tmp_path: Path, fsck: FsckRegistry) -> None:
    repo = _open(f"file://{origin}", tmp_path, fsck, "m", None)
    info = new_draft(repo, "pkg", "ws").info
    assert info is not None
    published = publish(repo, info, 1)
    assert refs(origin)["refs/tags/pkg/v1"] == published.commit

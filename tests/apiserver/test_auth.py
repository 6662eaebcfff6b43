"""Unit tests for ``porch.apiserver.auth``: token file, authentication, RBAC policy, redaction.

Everything here is pure: files live in ``tmp_path``, reloads are triggered by moving the file's
mtime with ``os.utime`` (never by sleeping), and nothing touches the network.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from pathlib import Path

import pytest

from porch.apiserver.auth import (
    ALL,
    ANONYMOUS,
    Authenticator,
    AuthFileError,
    Authorizer,
    User,
    parse_policy_file,
    parse_token_file,
    redact,
    user_from_subject,
)
from porch.errors import Unauthorized

DOCS = Path(__file__).resolve().parents[2] / "docs" / "auth.md"
PORCH = "porch.kpt.dev"
CONFIG = "config.porch.kpt.dev"
# Literals, not imported: the names are Kubernetes', the module must not drift from them.
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"

ALICE_TOKEN = "31ada4fd-adec-460c-809a-9e56ceb75269"
BOB_TOKEN = "0d1e5a5b0c5b4f0fbd3e9a0c"


def write(path: Path, text: str, *, mtime: int) -> Path:
    """Write ``text`` and pin the mtime, so a rewrite is a change whatever the fs resolution."""
    path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime, mtime))
    return path


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def team_user(name: str = "dave", *groups: str) -> User:
    return User(name, (*groups, AUTHENTICATED))


# --------------------------------------------------------------------------------------------
# token file parsing


def test_token_file_quoted_groups_comments_and_blank_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "tokens.csv",
        '# token,user,uid,"group1,group2"\n'
        "\n"
        f'{ALICE_TOKEN},alice,1001,"team-a,readers"\n'
        "   \n"
        "  # an indented comment\n"
        f"{BOB_TOKEN},bob,1002\n",
        mtime=1_000_000,
    )
    table = parse_token_file(path)
    assert len(table) == 2
    by_name = {entry.user.name: entry for entry in table.values()}
    alice, bob = by_name["alice"], by_name["bob"]
    assert alice.user == User("alice", ("team-a", "readers", AUTHENTICATED))
    assert alice.uid == "1001"
    assert alice.line == 3
    assert bob.user == User("bob", (AUTHENTICATED,))
    assert bob.uid == "1002"
    assert bob.line == 6
    # Only digests are kept, never the token itself.
    assert all(len(key) == 32 and ALICE_TOKEN.encode() not in key for key in table)


def test_token_file_spaces_around_fields_and_groups_are_ignored(tmp_path: Path) -> None:
    path = write(
        tmp_path / "tokens.csv",
        f' {ALICE_TOKEN} ,  alice , 1001 , "team-a , readers,,team-a" \n',
        mtime=1_000_000,
    )
    (entry,) = parse_token_file(path).values()
    assert entry.user == User("alice", ("team-a", "readers", AUTHENTICATED))
    assert entry.uid == "1001"


def test_token_file_authenticated_group_is_not_duplicated(tmp_path: Path) -> None:
    path = write(
        tmp_path / "tokens.csv",
        f'{ALICE_TOKEN},alice,1,"{AUTHENTICATED},{MASTERS}"\n',
        mtime=1_000_000,
    )
    (entry,) = parse_token_file(path).values()
    assert entry.user.groups == (MASTERS, AUTHENTICATED)


def test_token_file_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    path.write_bytes(f"\ufeff{ALICE_TOKEN},alice,1\r\n\r\n{BOB_TOKEN},bob,2\r\n".encode())
    table = parse_token_file(path)
    assert sorted((e.user.name, e.line) for e in table.values()) == [("alice", 1), ("bob", 3)]


@pytest.mark.parametrize(
    ("bad_line", "why"),
    [
        (f"{ALICE_TOKEN},alice", "expected 3 or 4 columns"),
        (f"{ALICE_TOKEN},alice,1,team-a,readers", "expected 3 or 4 columns"),
        (",alice,1", "token and user must not be empty"),
        (f"{ALICE_TOKEN},,1", "token and user must not be empty"),
        (f'{ALICE_TOKEN},alice,1,"team-a,readers', "malformed CSV"),
        (f'{ALICE_TOKEN},alice,1,"team-a"x', "malformed CSV"),
    ],
)
def test_token_file_bad_line_names_file_and_line_not_token(
    tmp_path: Path, bad_line: str, why: str
) -> None:
    path = write(
        tmp_path / "tokens.csv",
        f"# header\n{BOB_TOKEN},bob,2\n\n{bad_line}\n",
        mtime=1_000_000,
    )
    with pytest.raises(AuthFileError) as info:
        parse_token_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line 4: ")
    assert why in message
    assert ALICE_TOKEN not in message
    assert BOB_TOKEN not in message


def test_token_file_duplicate_token(tmp_path: Path) -> None:
    path = write(
        tmp_path / "tokens.csv",
        f"{ALICE_TOKEN},alice,1\n# other\n {ALICE_TOKEN} ,mallory,2\n",
        mtime=1_000_000,
    )
    with pytest.raises(AuthFileError) as info:
        parse_token_file(path)
    assert str(info.value) == f"{path}: line 3: duplicate token (first on line 1)"


def test_token_file_reloads_when_mtime_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "tokens.csv", f"{ALICE_TOKEN},alice,1\n", mtime=1_000_000)
    auth = Authenticator(path, allow_anonymous=False)
    assert auth.authenticate(bearer(ALICE_TOKEN)).name == "alice"

    # Same size and inode: only the mtime tells the file changed.
    write(path, f"{ALICE_TOKEN},carol,1\n", mtime=1_000_100)
    assert auth.authenticate(bearer(ALICE_TOKEN)).name == "carol"

    write(path, f'{BOB_TOKEN},bob,2,"devs"\n', mtime=1_000_200)
    assert auth.authenticate(bearer(BOB_TOKEN)) == User("bob", ("devs", AUTHENTICATED))
    with pytest.raises(Unauthorized):
        auth.authenticate(bearer(ALICE_TOKEN))


def test_token_file_unchanged_signature_is_not_reparsed(tmp_path: Path) -> None:
    path = write(tmp_path / "tokens.csv", f"{ALICE_TOKEN},alice,1\n", mtime=1_000_000)
    auth = Authenticator(path, allow_anonymous=False)
    assert auth.authenticate(bearer(ALICE_TOKEN)).name == "alice"
    # Same size, inode and mtime: the cached table is used (the stat signature is the contract).
    write(path, f"{ALICE_TOKEN},carol,1\n", mtime=1_000_000)
    assert auth.authenticate(bearer(ALICE_TOKEN)).name == "alice"


def test_token_file_broken_reload_keeps_previous_contents(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "tokens.csv", f"{ALICE_TOKEN},alice,1\n", mtime=1_000_000)
    auth = Authenticator(path, allow_anonymous=False)
    assert auth.authenticate(bearer(ALICE_TOKEN)).name == "alice"

    with caplog.at_level(logging.WARNING, logger="porch.apiserver.auth"):
        write(path, f"{ALICE_TOKEN},alice,1\n{BOB_TOKEN},bob\n", mtime=1_000_100)
        assert auth.authenticate(bearer(ALICE_TOKEN)).name == "alice"
        with pytest.raises(Unauthorized):
            auth.authenticate(bearer(BOB_TOKEN))
    # One warning per change, not one per request.
    failures = [r for r in caplog.records if "reload failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.WARNING
    assert "line 2" in caplog.text
    assert ALICE_TOKEN not in caplog.text
    assert BOB_TOKEN not in caplog.text

    # A deleted file is also a failed reload, not a lock-out.
    path.unlink()
    assert auth.authenticate(bearer(ALICE_TOKEN)).name == "alice"

    # Once fixed, the new contents take effect.
    write(path, f"{BOB_TOKEN},bob,2\n", mtime=1_000_200)
    assert auth.authenticate(bearer(BOB_TOKEN)).name == "bob"
    with pytest.raises(Unauthorized):
        auth.authenticate(bearer(ALICE_TOKEN))


def test_token_file_errors_at_startup_propagate(tmp_path: Path) -> None:
    path = write(tmp_path / "tokens.csv", f"{ALICE_TOKEN},alice\n", mtime=1_000_000)
    with pytest.raises(AuthFileError, match="line 1"):
        Authenticator(path, allow_anonymous=True)
    with pytest.raises(OSError):
        Authenticator(tmp_path / "missing.csv", allow_anonymous=True)


# --------------------------------------------------------------------------------------------
# Authenticator


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return write(
        tmp_path / "tokens.csv",
        f'{ALICE_TOKEN},alice,1001,"team-a,readers"\n{BOB_TOKEN},bob,1002\n',
        mtime=1_000_000,
    )


def test_no_header_is_unauthorized_unless_anonymous(token_file: Path) -> None:
    with pytest.raises(Unauthorized) as info:
        Authenticator(token_file, allow_anonymous=False).authenticate({})
    assert info.value.code == 401
    assert Authenticator(token_file, allow_anonymous=True).authenticate({}) is ANONYMOUS
    assert ANONYMOUS == User("system:anonymous", (UNAUTHENTICATED,))
    assert Authenticator(None, allow_anonymous=True).authenticate({"Accept": "x"}) is ANONYMOUS


@pytest.mark.parametrize(
    "value",
    [
        "Bearer not-a-known-token",
        f"Bearer {ALICE_TOKEN}x",
        f"Basic {base64.b64encode(b'alice:secret').decode()}",
        f"Basic {ALICE_TOKEN}",
        f"Token {ALICE_TOKEN}",
        ALICE_TOKEN,
        "Bearer",
        "Bearer   ",
        "",
        "   ",
    ],
)
def test_bad_authorization_is_401_even_with_anonymous(token_file: Path, value: str) -> None:
    auth = Authenticator(token_file, allow_anonymous=True, client_ca=b"-----BEGIN CERTIFICATE-----")
    with pytest.raises(Unauthorized):
        auth.authenticate({"Authorization": value}, client_cert_subject="CN=alice,O=devs")


def test_bearer_without_token_file_is_401() -> None:
    with pytest.raises(Unauthorized):
        Authenticator(None, allow_anonymous=True).authenticate(bearer(ALICE_TOKEN))


def test_valid_token_gives_user_with_groups(token_file: Path) -> None:
    auth = Authenticator(token_file, allow_anonymous=False)
    assert auth.authenticate(bearer(ALICE_TOKEN)) == User(
        "alice", ("team-a", "readers", AUTHENTICATED)
    )
    assert auth.authenticate(bearer(BOB_TOKEN)) == User("bob", (AUTHENTICATED,))


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {ALICE_TOKEN}"},
        {"authorization": f"Bearer {ALICE_TOKEN}"},
        {"AUTHORIZATION": f"Bearer {ALICE_TOKEN}"},
        {"aUtHoRiZaTiOn": f"bearer {ALICE_TOKEN}"},
        {"Authorization": f"BEARER   {ALICE_TOKEN}  "},
        {"Accept": "application/json", "Authorization": f"  Bearer {ALICE_TOKEN}"},
    ],
)
def test_header_name_and_scheme_are_case_insensitive(
    token_file: Path, headers: dict[str, str]
) -> None:
    user = Authenticator(token_file, allow_anonymous=False).authenticate(headers)
    assert user.name == "alice"


def test_token_decides_alone_over_client_certificate(token_file: Path) -> None:
    auth = Authenticator(token_file, allow_anonymous=False, client_ca=b"ca")
    user = auth.authenticate(bearer(BOB_TOKEN), client_cert_subject="CN=alice,O=devs")
    assert user.name == "bob"


def test_client_certificate_used_only_with_client_ca(token_file: Path) -> None:
    with_ca = Authenticator(token_file, allow_anonymous=False, client_ca=b"ca")
    assert with_ca.authenticate({}, client_cert_subject="CN=alice,O=devs") == User(
        "alice", ("devs", AUTHENTICATED)
    )

    without_ca = Authenticator(token_file, allow_anonymous=False)
    with pytest.raises(Unauthorized):
        without_ca.authenticate({}, client_cert_subject="CN=alice,O=devs")
    anonymous = Authenticator(token_file, allow_anonymous=True)
    assert anonymous.authenticate({}, client_cert_subject="CN=alice,O=devs") is ANONYMOUS

    # An empty subject is no certificate at all.
    with pytest.raises(Unauthorized):
        with_ca.authenticate({}, client_cert_subject="")


def test_client_certificate_without_cn_is_401() -> None:
    auth = Authenticator(None, allow_anonymous=True, client_ca=b"ca")
    with pytest.raises(Unauthorized):
        auth.authenticate({}, client_cert_subject="O=devs,OU=x")


def test_user_from_subject() -> None:
    assert user_from_subject("CN=alice,O=devs") == User("alice", ("devs", AUTHENTICATED))
    assert user_from_subject("O=devs, O=ops, CN=alice, OU=ignored, C=DE") == User(
        "alice", ("devs", "ops", AUTHENTICATED)
    )
    assert user_from_subject("cn=bob+o=devs") == User("bob", ("devs", AUTHENTICATED))
    # RFC 4514 escapes: an escaped comma and a hex pair.
    assert user_from_subject(r"CN=Smith\, John,O=\41cme") == User(
        "Smith, John", ("Acme", AUTHENTICATED)
    )
    assert user_from_subject(f"CN=admin,O={MASTERS},O={MASTERS}") == User(
        "admin", (MASTERS, AUTHENTICATED)
    )


@pytest.mark.parametrize("subject", ["O=devs", "", "   ", "CN=,O=devs", "OU=alice"])
def test_user_from_subject_without_cn_is_401(subject: str) -> None:
    with pytest.raises(Unauthorized) as info:
        user_from_subject(subject)
    assert info.value.code == 401


# --------------------------------------------------------------------------------------------
# Authorizer


def doc_policy(tmp_path: Path) -> Path:
    """The example policy from docs/auth.md, so the documentation is tested as written."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", DOCS.read_text(encoding="utf-8"), re.M | re.S)
    assert len(blocks) == 1, "docs/auth.md should hold exactly one yaml example"
    return write(tmp_path / "rbac.yaml", blocks[0], mtime=1_000_000)


def policy(tmp_path: Path, text: str, *, mtime: int = 1_000_000) -> Path:
    return write(tmp_path / "rbac.yaml", text, mtime=mtime)


TEAM_A = team_user("dave", "team-a")
CAROL = team_user("carol")
RELEASE = team_user("erin", "release-managers")
OUTSIDER = team_user("mallory", "team-b")
ADMIN = team_user("admin", MASTERS)


def test_no_policy_file_allows_everything() -> None:
    authz = Authorizer(None)
    for user in (ANONYMOUS, OUTSIDER):
        assert authz.allowed(user, "delete", "", "secrets", "", "kube-system")
        assert authz.allowed(user, "update", PORCH, "packagerevisions", "approval", None)
        assert authz.namespaces_for(user, "list", PORCH, "packagerevisions") is ALL


def test_doc_example_policy_parses(tmp_path: Path) -> None:
    rules = parse_policy_file(doc_policy(tmp_path))
    assert len(rules) == 3
    assert rules[0].groups == {"team-a"}
    assert rules[0].namespaces == {"a"}
    assert rules[2].users == {"carol"}
    assert rules[2].groups == {"release-managers"}
    assert rules[2].namespaces is None


def test_doc_example_team_is_namespace_bound(tmp_path: Path) -> None:
    authz = Authorizer(doc_policy(tmp_path))
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        assert authz.allowed(TEAM_A, verb, PORCH, "packagerevisions", "", "a"), verb
    assert authz.allowed(TEAM_A, "update", PORCH, "packagerevisionresources", "", "a")
    assert authz.allowed(TEAM_A, "get", CONFIG, "repositories", "", "a")

    # Not in namespace b, not across namespaces, not at cluster scope.
    assert not authz.allowed(TEAM_A, "update", PORCH, "packagerevisions", "", "b")
    assert not authz.allowed(TEAM_A, "list", PORCH, "packagerevisions", "", None)
    assert not authz.allowed(TEAM_A, "list", PORCH, "packagerevisions", "", "")
    # Approving is a subresource the plain resource does not cover.
    assert not authz.allowed(TEAM_A, "update", PORCH, "packagerevisions", "approval", "a")
    # Verbs, resources and API groups outside the grant.
    assert not authz.allowed(TEAM_A, "deletecollection", PORCH, "packagerevisions", "", "a")
    assert not authz.allowed(TEAM_A, "update", CONFIG, "repositories", "", "a")
    assert not authz.allowed(TEAM_A, "get", PORCH, "repositories", "", "a")
    assert not authz.allowed(TEAM_A, "get", CONFIG, "repositories", "status", "a")
    assert not authz.allowed(TEAM_A, "get", "", "secrets", "", "a")
    # Someone outside every rule gets nothing.
    assert not authz.allowed(OUTSIDER, "get", PORCH, "packagerevisions", "", "a")
    assert not authz.allowed(ANONYMOUS, "get", PORCH, "packagerevisions", "", "a")


def test_doc_example_release_managers_approve_everywhere(tmp_path: Path) -> None:
    authz = Authorizer(doc_policy(tmp_path))
    for user in (CAROL, RELEASE):
        for ns in ("a", "b", None):
            assert authz.allowed(user, "update", PORCH, "packagerevisions", "approval", ns)
            assert authz.allowed(user, "list", PORCH, "packagerevisions", "", ns)
        assert not authz.allowed(user, "create", PORCH, "packagerevisions", "", "a")
        assert not authz.allowed(user, "update", PORCH, "packages", "", "a")
    # "user: carol" binds by name only, not a group called carol.
    assert not authz.allowed(
        team_user("frank", "carol"), "update", PORCH, "packagerevisions", "approval", "a"
    )


def test_doc_example_namespaces_for(tmp_path: Path) -> None:
    authz = Authorizer(doc_policy(tmp_path))
    assert authz.namespaces_for(TEAM_A, "list", PORCH, "packagerevisions") == {"a"}
    assert authz.namespaces_for(TEAM_A, "list", CONFIG, "repositories") == {"a"}
    assert authz.namespaces_for(TEAM_A, "update", CONFIG, "repositories") == set()
    assert authz.namespaces_for(TEAM_A, "update", PORCH, "packagerevisions", "approval") == set()
    assert authz.namespaces_for(OUTSIDER, "list", PORCH, "packagerevisions") == set()
    assert authz.namespaces_for(CAROL, "list", PORCH, "packagerevisions") is ALL
    assert authz.namespaces_for(CAROL, "update", PORCH, "packagerevisions", "approval") is ALL
    assert authz.namespaces_for(ADMIN, "delete", "", "secrets") is ALL


def test_namespaces_for_unions_rules(tmp_path: Path) -> None:
    authz = Authorizer(
        policy(
            tmp_path,
            """
rules:
  - subjects: [{group: team-a}]
    namespaces: [a, shared]
    resources: [packages]
    verbs: [list]
  - subjects: [{user: dave}]
    namespaces: [d]
    resources: ["*"]
    verbs: ["*"]
  - subjects: [{group: team-b}]
    namespaces: [b]
    resources: [packages]
    verbs: [list]
""",
        )
    )
    assert authz.namespaces_for(TEAM_A, "list", PORCH, "packages") == {"a", "shared", "d"}
    assert authz.namespaces_for(TEAM_A, "get", PORCH, "packages") == {"d"}
    assert authz.namespaces_for(team_user("erin", "team-a"), "get", PORCH, "packages") == set()


def test_masters_always_allowed(tmp_path: Path) -> None:
    authz = Authorizer(doc_policy(tmp_path))
    assert authz.allowed(ADMIN, "delete", "", "secrets", "", "kube-system")
    assert authz.allowed(ADMIN, "deletecollection", PORCH, "packagerevisions", "", None)
    assert authz.allowed(ADMIN, "update", PORCH, "packagerevisions", "approval", "b")

    empty = Authorizer(policy(tmp_path, "rules: []\n"))
    assert empty.allowed(ADMIN, "get", PORCH, "packages", "", "a")
    assert not empty.allowed(TEAM_A, "get", PORCH, "packages", "", "a")


def test_wildcards(tmp_path: Path) -> None:
    authz = Authorizer(
        policy(
            tmp_path,
            """
rules:
  - subjects: [{user: root}]
    namespaces: "*"
    resources: ["*"]
    verbs: ["*"]
  - subjects: [{user: status}]
    namespaces: [a]
    apiGroups: [config.porch.kpt.dev]
    resources: [repositories/*]
    verbs: [get, update]
  - subjects: [{user: approver}]
    namespaces: [a]
    resources: ["*/approval"]
    verbs: [update]
  - subjects: [{user: core}]
    namespaces: ["*"]
    apiGroups: [""]
    resources: [secrets]
    verbs: [get]
""",
        )
    )
    root = team_user("root")
    assert authz.allowed(root, "deletecollection", "anything", "whatever", "sub", None)
    assert authz.allowed(root, "get", "", "secrets", "", "x")

    status = team_user("status")
    assert authz.allowed(status, "update", CONFIG, "repositories", "status", "a")
    assert authz.allowed(status, "get", CONFIG, "repositories", "anything", "a")
    # "resource/*" covers subresources, not the resource itself.
    assert not authz.allowed(status, "get", CONFIG, "repositories", "", "a")
    assert not authz.allowed(status, "get", PORCH, "repositories", "status", "a")
    assert not authz.allowed(status, "get", CONFIG, "packages", "status", "a")
    assert not authz.allowed(status, "delete", CONFIG, "repositories", "status", "a")

    approver = team_user("approver")
    assert authz.allowed(approver, "update", PORCH, "packagerevisions", "approval", "a")
    assert authz.allowed(approver, "update", "other.group", "anything", "approval", "a")
    assert not authz.allowed(approver, "update", PORCH, "packagerevisions", "", "a")
    assert not authz.allowed(approver, "update", PORCH, "packagerevisions", "status", "a")
    assert not authz.allowed(approver, "update", PORCH, "packagerevisions", "approval", "b")

    core = team_user("core")
    assert authz.allowed(core, "get", "", "secrets", "", "a")
    assert authz.allowed(core, "get", "", "secrets", "", None)
    assert not authz.allowed(core, "get", PORCH, "secrets", "", "a")


def test_plain_resource_does_not_cover_subresources(tmp_path: Path) -> None:
    authz = Authorizer(
        policy(
            tmp_path,
            """
rules:
  - subjects: [{user: dave}]
    namespaces: "*"
    resources: [packagerevisions, repositories/status]
    verbs: ["*"]
""",
        )
    )
    dave = team_user("dave")
    assert authz.allowed(dave, "update", PORCH, "packagerevisions", "", "a")
    assert not authz.allowed(dave, "update", PORCH, "packagerevisions", "approval", "a")
    assert authz.allowed(dave, "update", CONFIG, "repositories", "status", "a")
    assert not authz.allowed(dave, "update", CONFIG, "repositories", "", "a")
    assert not authz.allowed(dave, "update", CONFIG, "repositories", "other", "a")


def test_group_subjects(tmp_path: Path) -> None:
    authz = Authorizer(
        policy(
            tmp_path,
            f"""
rules:
  - subjects: [{{group: {AUTHENTICATED}}}]
    namespaces: "*"
    resources: [packages]
    verbs: [get]
  - subjects: [{{group: {UNAUTHENTICATED}}}]
    namespaces: [public]
    resources: [packages]
    verbs: [list]
  - subjects: [{{group: readers}}, {{user: bob}}]
    namespaces: [a]
    resources: [packagerevisions]
    verbs: [list]
""",
        )
    )
    anyone = team_user("zed")
    assert authz.allowed(anyone, "get", PORCH, "packages", "", "x")
    assert not authz.allowed(anyone, "list", PORCH, "packages", "", "public")
    assert not authz.allowed(ANONYMOUS, "get", PORCH, "packages", "", "x")
    assert authz.allowed(ANONYMOUS, "list", PORCH, "packages", "", "public")

    reader = team_user("alice", "team-a", "readers")
    assert authz.allowed(reader, "list", PORCH, "packagerevisions", "", "a")
    assert authz.allowed(team_user("bob"), "list", PORCH, "packagerevisions", "", "a")
    assert not authz.allowed(team_user("bobby", "bob"), "list", PORCH, "packagerevisions", "", "a")
    assert not authz.allowed(team_user("readers"), "list", PORCH, "packagerevisions", "", "a")


RULE = """\
  - subjects: [{user: dave}]
    namespaces: [a]
    resources: [packages]
    verbs: [get]
"""


@pytest.mark.parametrize(
    ("bad_rule", "expected"),
    [
        (
            RULE + "    resourceNames: [x]\n",
            "rules[1]: unknown key(s) ['resourceNames']",
        ),
        (
            RULE.replace("verbs: [get]", "verbs: [get, updte]"),
            "rules[1].verbs: unknown verb(s) ['updte']",
        ),
        (
            RULE.replace("verbs: [get]", "verbs: []"),
            "rules[1].verbs: expected a non-empty list of strings",
        ),
        (
            RULE.replace("verbs: [get]", "verbs: get"),
            "rules[1].verbs: expected a non-empty list of strings",
        ),
        (
            RULE.replace("    verbs: [get]\n", ""),
            "rules[1]: missing key(s) ['verbs']",
        ),
        (
            RULE.replace("namespaces: [a]", "namespaces: a"),
            "rules[1].namespaces: expected a non-empty list of strings",
        ),
        (
            RULE.replace("namespaces: [a]", 'namespaces: [a, ""]'),
            "rules[1].namespaces: expected a non-empty list of strings",
        ),
        (
            RULE.replace("resources: [packages]", "resources: []"),
            "rules[1].resources: expected a non-empty list of strings",
        ),
        (
            RULE.replace("resources: [packages]", "resources: [packages, 3]"),
            "rules[1].resources: expected a non-empty list of strings",
        ),
        (
            RULE + "    apiGroups: []\n",
            "rules[1].apiGroups: expected a non-empty list of strings",
        ),
        (
            RULE.replace("[{user: dave}]", "[]"),
            "rules[1].subjects: expected a non-empty list",
        ),
        (
            RULE.replace("[{user: dave}]", "[{user: dave}, {serviceaccount: x}]"),
            "rules[1].subjects[1]: expected {user: X} or {group: X}",
        ),
        (
            RULE.replace("[{user: dave}]", "[{user: dave, group: x}]"),
            "rules[1].subjects[0]: expected {user: X} or {group: X}",
        ),
        (
            RULE.replace("[{user: dave}]", "[dave]"),
            "rules[1].subjects[0]: expected {user: X} or {group: X}",
        ),
        (
            RULE.replace("[{user: dave}]", '[{user: ""}]'),
            "rules[1].subjects[0]: expected {user: X} or {group: X}",
        ),
        ("  - just a string\n", "rules[1]: expected a mapping"),
    ],
)
def test_policy_errors_name_the_rule(tmp_path: Path, bad_rule: str, expected: str) -> None:
    path = policy(tmp_path, "rules:\n" + RULE + bad_rule)
    with pytest.raises(AuthFileError) as info:
        parse_policy_file(path)
    assert str(info.value) == f"{path}: {expected}"


def test_empty_api_group_is_allowed_only_in_api_groups(tmp_path: Path) -> None:
    (rule,) = parse_policy_file(policy(tmp_path, "rules:\n" + RULE + '    apiGroups: [""]\n'))
    assert rule.api_groups == {""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [\n", "invalid YAML"),
        ("- a\n- b\n", "expected a mapping with a 'rules' list"),
        ("rules: {}\n", "expected a mapping with a 'rules' list"),
        ("kind: RBACPolicy\n", "expected a mapping with a 'rules' list"),
        ("rules: []\nroles: []\n", "unknown top-level key(s) ['roles']"),
    ],
)
def test_policy_file_level_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = policy(tmp_path, text)
    with pytest.raises(AuthFileError) as info:
        parse_policy_file(path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_policy_reload_and_broken_reload(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = "rules:\n" + RULE
    path = policy(tmp_path, text, mtime=1_000_000)
    authz = Authorizer(path)
    dave = team_user("dave")
    assert authz.allowed(dave, "get", PORCH, "packages", "", "a")
    assert not authz.allowed(dave, "get", PORCH, "packages", "", "b")

    policy(tmp_path, text.replace("[a]", "[b]"), mtime=1_000_100)
    assert not authz.allowed(dave, "get", PORCH, "packages", "", "a")
    assert authz.allowed(dave, "get", PORCH, "packages", "", "b")

    with caplog.at_level(logging.WARNING, logger="porch.apiserver.auth"):
        policy(tmp_path, text.replace("[get]", "[gett]"), mtime=1_000_200)
        assert authz.allowed(dave, "get", PORCH, "packages", "", "b")
        assert not authz.allowed(dave, "get", PORCH, "packages", "", "a")
    assert "reload failed" in caplog.text
    assert "rules[0].verbs: unknown verb(s) ['gett']" in caplog.text

    policy(tmp_path, text, mtime=1_000_300)
    assert authz.allowed(dave, "get", PORCH, "packages", "", "a")


def test_policy_errors_at_startup_propagate(tmp_path: Path) -> None:
    with pytest.raises(AuthFileError, match=r"rules\[0\]\.verbs"):
        Authorizer(policy(tmp_path, "rules:\n" + RULE.replace("[get]", "[gett]")))


# --------------------------------------------------------------------------------------------
# forbidden_message


def test_forbidden_message_namespaced_with_name() -> None:
    message = Authorizer.forbidden_message(
        team_user("alice"), "update", PORCH, "packagerevisions", "approval", "a", "repo.pkg.v1"
    )
    assert message == (
        'packagerevisions.porch.kpt.dev "repo.pkg.v1" is forbidden: User "alice" cannot update '
        'resource "packagerevisions/approval" in API group "porch.kpt.dev" in the namespace "a"'
    )


def test_forbidden_message_list_at_cluster_scope() -> None:
    message = Authorizer.forbidden_message(
        team_user("alice"), "list", PORCH, "packagerevisions", "", None
    )
    assert message == (
        'packagerevisions.porch.kpt.dev is forbidden: User "alice" cannot list resource '
        '"packagerevisions" in API group "porch.kpt.dev" at the cluster scope'
    )
    # An empty namespace is cluster scope too.
    assert message == Authorizer.forbidden_message(
        team_user("alice"), "list", PORCH, "packagerevisions", "", ""
    )


def test_forbidden_message_namespaced_list_without_name() -> None:
    message = Authorizer.forbidden_message(
        team_user("bob"), "list", CONFIG, "repositories", "", "default"
    )
    assert message == (
        'repositories.config.porch.kpt.dev is forbidden: User "bob" cannot list resource '
        '"repositories" in API group "config.porch.kpt.dev" in the namespace "default"'
    )


def test_forbidden_message_core_group_and_anonymous() -> None:
    assert Authorizer.forbidden_message(ANONYMOUS, "get", "", "secrets", "", "a", "creds") == (
        'secrets "creds" is forbidden: User "system:anonymous" cannot get resource "secrets" '
        'in API group "" in the namespace "a"'
    )
    assert Authorizer.forbidden_message(
        team_user("x"), "get", CONFIG, "repositories", "status", None, "r"
    ) == (
        'repositories.config.porch.kpt.dev "r" is forbidden: User "x" cannot get resource '
        '"repositories/status" in API group "config.porch.kpt.dev" at the cluster scope'
    )


def test_forbidden_messages_match_docs() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    alice = team_user("alice")
    for message in (
        Authorizer.forbidden_message(
            alice, "update", PORCH, "packagerevisions", "approval", "a", "repo.pkg.v1"
        ),
        Authorizer.forbidden_message(alice, "list", PORCH, "packagerevisions", "", None),
    ):
        assert f"\n{message}\n" in doc


# --------------------------------------------------------------------------------------------
# redact

BASIC = base64.b64encode(b"alice:s3cret").decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"Authorization: Bearer {ALICE_TOKEN}",
            "Authorization: Bearer [REDACTED]",
        ),
        (
            f'headers={{"authorization": "bearer {ALICE_TOKEN}", "accept": "json"}}',
            'headers={"authorization": "bearer [REDACTED]", "accept": "json"}',
        ),
        (f"Authorization: Basic {BASIC}", "Authorization: Basic [REDACTED]"),
        (f"got basic {BASIC}, rejected", "got basic [REDACTED], rejected"),
        ("password=hunter2&user=alice", "password=[REDACTED]&user=alice"),
        ('{"password": "hunter2", "user": "alice"}', '{"password": "[REDACTED]", "user": "alice"}'),
        ("passwd: hunter2 and more", "passwd: [REDACTED] and more"),
        ("PASSWORD = hunter2", "PASSWORD = [REDACTED]"),
        (f"token: {ALICE_TOKEN}", "token: [REDACTED]"),
        (f"id-token={ALICE_TOKEN};x=1", "id-token=[REDACTED];x=1"),
        (f"access_token='{ALICE_TOKEN}'", "access_token='[REDACTED]'"),
        ("client-key-data: LS0tLS1CRUdJTg==", "client-key-data: [REDACTED]"),
        (
            "clone https://alice:s3cret@git.example.com/org/repo.git failed",
            "clone https://[REDACTED]@git.example.com/org/repo.git failed",
        ),
        (
            "remote ssh+git://deploy:pw@host:22/r and http://u@h/x",
            "remote ssh+git://[REDACTED]@host:22/r and http://[REDACTED]@h/x",
        ),
    ],
)
def test_redact_removes_secrets(text: str, expected: str) -> None:
    redacted = redact(text)
    assert redacted == expected
    for secret in (ALICE_TOKEN, BASIC, "hunter2", "s3cret"):
        assert secret not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain log line: namespace a, user alice, 3 packages",
        "Basic auth is disabled",
        "basic checks passed",
        "git@github.com:org/repo.git",
        "https://git.example.com/org/repo.git?ref=main",
        "mailto alice@example.com",
        "tokens.csv: line 3: duplicate token (first on line 1)",
        "rbac.yaml: rules[2].verbs: unknown verb(s) ['updte']",
    ],
)
def test_redact_keeps_other_text(text: str) -> None:
    assert redact(text) == text


def test_redact_keeps_surrounding_text() -> None:
    text = (
        f"GET /apis/porch.kpt.dev/v1alpha1 Authorization: Bearer {ALICE_TOKEN} "
        "from https://alice:s3cret@example.com/x password=hunter2 status=401"
    )
    assert redact(text) == (
        "GET /apis/porch.kpt.dev/v1alpha1 Authorization: Bearer [REDACTED] "
        "from https://[REDACTED]@example.com/x password=[REDACTED] status=401"
    )


@pytest.mark.parametrize("text", [f"rejected Basic {BASIC}.", f"(Authorization: Basic {BASIC})"])
def test_redact_basic_followed_by_punctuation(text: str) -> None:
    assert BASIC not in redact(text)

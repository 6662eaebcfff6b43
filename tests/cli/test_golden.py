"""One golden transcript per porchctl command, each against its own real ``porch serve``.

The demo repository ``demo`` holds published ``hello-world`` and ``basens``; writes go to a
fresh bare repository registered as ``blue``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from porch.api.types import ReadinessGate
from porch.client import PorchClient
from tests.cli.conftest import Porchctl, Result
from tests.cli.golden import check

Step = str | Callable[[Porchctl], None]

REG_BLUE = "repo reg {blue} --name blue --description 'scratch repository'"


def write(rel: str, text: str) -> Callable[[Porchctl], None]:
    def step(p: Porchctl) -> None:
        (p.tmp / rel).write_text(text)

    return step


def gate(name: str, condition: str) -> Callable[[Porchctl], None]:
    """Add a readiness gate through the API (porchctl has no verb for it, like upstream)."""

    def step(p: Porchctl) -> None:
        with PorchClient(p.served.url) as client:
            pr = client.get_package_revision(name)
            pr.spec.readiness_gates.append(ReadinessGate(condition_type=condition))
            client.update_package_revision(pr)

    return step


def sub(rel: str, old: str, new: str) -> Callable[[Porchctl], None]:
    def step(p: Porchctl) -> None:
        path = p.tmp / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new))

    return step


def remove(rel: str) -> Callable[[Porchctl], None]:
    def step(p: Porchctl) -> None:
        (p.tmp / rel).unlink()

    return step


CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n"

PIPELINE_KPTFILE = """\
apiVersion: kpt.dev/v1
kind: Kptfile
metadata:
  name: app
pipeline:
  mutators:
  - image: ghcr.io/kptdev/krm-functions-catalog/set-labels:v0.2
    configMap:
      team: blue
"""

SCENARIOS: dict[str, list[Step]] = {
    "help": ["--help", "repo --help", "rpkg --help", "rpkg get --help", "nosuch"],
    "repo_reg": [
        REG_BLUE + " --repo-basic-username alice --repo-basic-password s3cret --dry-run",
        REG_BLUE + " --repo-basic-username alice --repo-basic-password s3cret",
        "repo get blue -o custom-columns=NAME:.metadata.name,SECRET:.spec.git.secretRef.name",
        REG_BLUE,
        "repo reg {blue} --sync-schedule 'every minute'",
        "repo reg {blue} --repo-workload-identity --repo-basic-username x",
    ],
    "repo_get": [
        "repo get",
        "repo get -o wide",
        "repo get -A",
        "repo get demo -o name",
        "repo get nosuch",
        "repo list -o custom-columns=NAME:.metadata.name,BRANCH:.spec.git.branch",
    ],
    "repo_sync": [
        "repo sync demo --dry-run",
        "repo sync demo --run-once 10m",
        "repo get demo -o custom-columns=NAME:.metadata.name,AT:.spec.sync.runOnceAt",
        "repo sync",
        "repo sync nosuch",
    ],
    "repo_unreg": [
        REG_BLUE + " --repo-basic-username alice --repo-basic-password s3cret",
        "repo unreg blue --dry-run",
        "repo unreg blue",
        "repo get",
        "repo unreg blue",
    ],
    "rpkg_get": [
        "rpkg get",
        "rpkg get --name basens",
        "rpkg get --revision 1 -o wide",
        "rpkg get --workspace main -A",
        "rpkg get demo.basens.v1 -o yaml",
        "rpkg get demo.hello-world.v1 demo.basens.v1 -o name",
        "rpkg get -o custom-columns=NAME:.metadata.name,TASK:.spec.tasks[0].type",
        "rpkg get demo.hello-world.v1 --show-kptfile",
        "rpkg get --show-kptfile",
        "rpkg get demo.nosuch.v1",
        "rpkg get demo.nosuch.v1 demo.basens.v1",
        "rpkg get -o toml",
        "rpkg get -n ''",
        "rpkg get -n other",
    ],
    "rpkg_init": [
        REG_BLUE,
        "rpkg init net --repository blue --workspace v1 --dry-run --keywords a,b",
        "rpkg init net --repository blue --workspace v1 --description 'network base'",
        "rpkg init net --repository blue --workspace v1",
        "rpkg init Bad_Name --repository blue --workspace v1",
        "rpkg init net --repository nosuch --workspace v1",
        "rpkg get --name net",
    ],
    "rpkg_clone": [
        REG_BLUE,
        "rpkg clone demo.basens.v1 basens --repository blue --dry-run",
        "rpkg clone https://example.com/blueprints.git/base/ns@v2 ns --repository blue --dry-run",
        "rpkg clone https://example.com/b.git/base --directory other app --repository blue",
        "rpkg clone demo.basens.v1 basens --repository blue",
        "rpkg clone demo.basens.v1 basens --repository blue --workspace v2",
        "rpkg clone {data}/repos/demo.git/hello-world@hello-world/v1 hw --repository blue",
        "rpkg get --name hw -o custom-columns=NAME:.metadata.name,UPSTREAM:.status.upstreamLock",
        "rpkg clone oci://127.0.0.1:1/pkg app --repository blue",
    ],
    "rpkg_copy": [
        "rpkg copy demo.basens.v1 --workspace v2 --dry-run",
        "rpkg copy demo.basens.v1 --workspace v2",
        "rpkg edit demo.basens.v1 --workspace v2",
        "rpkg copy demo.nosuch.v1 --workspace v2",
        "rpkg get --name basens",
    ],
    "rpkg_pull": [
        "rpkg pull demo.hello-world.v1 {tmp}/hello",
        "rpkg pull demo.hello-world.v1 {tmp}/hello",
        "rpkg pull demo.basens.v1",
        "rpkg pull demo.nosuch.v1 {tmp}/other",
    ],
    "rpkg_push": [
        REG_BLUE,
        "rpkg init app --repository blue --workspace v1",
        "rpkg pull blue.app.v1 {tmp}/app",
        write("app/settings.yaml", CM),
        "rpkg push blue.app.v1 {tmp}/app --dry-run",
        "rpkg push blue.app.v1 {tmp}/app",
        "rpkg push blue.app.v1 {tmp}/app",
        remove("app/.KptRevisionMetadata"),
        "rpkg push blue.app.v1 {tmp}/app",
        "rpkg pull blue.app.v1 {tmp}/app2",
        remove("app2/README.md"),
        "rpkg push blue.app.v1 {tmp}/app2",
        "rpkg get blue.app.v1 -o custom-columns=NAME:.metadata.name,LIFECYCLE:.spec.lifecycle",
        "rpkg push demo.basens.v1 {tmp}/app2",
        "rpkg pull blue.app.v1 {tmp}/app3",
        write("app3/Kptfile", PIPELINE_KPTFILE),
        "rpkg push blue.app.v1 {tmp}/app3",
        write("app3/bad.yaml", "a: [unclosed\n"),
        "rpkg push blue.app.v1 {tmp}/app3 --dry-run",
    ],
    "rpkg_propose": [
        REG_BLUE,
        "rpkg init app --repository blue --workspace v1",
        "rpkg propose blue.app.v1 --dry-run",
        "rpkg propose blue.app.v1",
        "rpkg propose blue.app.v1",
        "rpkg propose demo.basens.v1 blue.nosuch.v1",
        "rpkg propose",
        "rpkg init gated --repository blue --workspace v1",
        gate("blue.gated.v1", "tested"),
        "rpkg propose blue.gated.v1",
        "rpkg get blue.gated.v1 -o custom-columns=NAME:.metadata.name,GATES:.spec.readinessGates",
    ],
    "rpkg_approve": [
        REG_BLUE,
        "rpkg init app --repository blue --workspace v1",
        "rpkg approve blue.app.v1",
        "rpkg propose blue.app.v1",
        "rpkg approve blue.app.v1 --dry-run",
        "rpkg approve blue.app.v1",
        "rpkg approve blue.app.v1",
        "rpkg get --name app",
    ],
    "rpkg_reject": [
        REG_BLUE,
        "rpkg init app --repository blue --workspace v1",
        "rpkg reject blue.app.v1",
        "rpkg propose blue.app.v1",
        "rpkg reject blue.app.v1 --dry-run",
        "rpkg reject blue.app.v1",
        "rpkg get blue.app.v1",
        "rpkg propose-delete demo.basens.v1",
        "rpkg reject demo.basens.v1",
        "rpkg get demo.basens.v1",
    ],
    "rpkg_propose_delete": [
        "rpkg propose-delete demo.basens.v1 --dry-run",
        "rpkg propose-delete demo.basens.v1",
        "rpkg propose-delete demo.basens.v1",
        "rpkg propose-del demo.hello-world.v1",
        "rpkg copy demo.basens.v1 --workspace v2",
        "rpkg propose-delete demo.basens.v2",
        "rpkg get --name basens",
    ],
    "rpkg_del": [
        "rpkg copy demo.basens.v1 --workspace v2",
        "rpkg del demo.basens.v2 --dry-run",
        "rpkg del demo.basens.v2",
        "rpkg del demo.basens.v1",
        "rpkg propose-delete demo.basens.v1",
        "rpkg delete demo.basens.v1 demo.nosuch.v1",
        "rpkg get --name basens",
    ],
    "rpkg_bulk": [
        "rpkg copy demo.basens.v1 --workspace v2",
        "rpkg copy demo.hello-world.v1 --workspace v2",
        "rpkg propose --field-selector spec.workspaceName=v2",
        "rpkg approve --selector kpt.dev/latest-revision=true",
        "rpkg approve --field-selector spec.lifecycle=Proposed",
        "rpkg propose demo.basens.v2 --selector x=y",
        "rpkg get --workspace v2",
    ],
    "rpkg_upgrade": [
        REG_BLUE,
        "rpkg clone demo.basens.v1 basens --repository blue",
        "rpkg propose blue.basens.v1",
        "rpkg approve blue.basens.v1",
        "rpkg upgrade --discover upstream",
        "rpkg copy demo.basens.v1 --workspace v2",
        "rpkg propose demo.basens.v2",
        "rpkg approve demo.basens.v2",
        "rpkg upgrade --discover upstream",
        "rpkg upgrade --discover downstream",
        "rpkg upgrade blue.basens.v1 --workspace up --dry-run",
        "rpkg upgrade blue.basens.v1 --workspace up --revision 7",
        "rpkg upgrade blue.basens.v1 --workspace up --strategy fast-forward",
        "rpkg upgrade demo.basens.v1 --workspace v3",
        "rpkg upgrade demo.basens.v1",
        "rpkg upgrade --discover upstream",
        "rpkg upgrade demo.basens.v1 --workspace v3 --strategy bogus",
    ],
    "rpkg_upgrade_conflict": [
        REG_BLUE,
        "rpkg clone demo.hello-world.v1 hw --repository blue",
        "rpkg pull blue.hw.v1 {tmp}/local",
        sub("local/hello-world.yaml", "greeting: hello", "greeting: hi"),
        "rpkg push blue.hw.v1 {tmp}/local",
        "rpkg propose blue.hw.v1",
        "rpkg approve blue.hw.v1",
        "rpkg copy demo.hello-world.v1 --workspace v2",
        "rpkg pull demo.hello-world.v2 {tmp}/up",
        sub("up/hello-world.yaml", "greeting: hello", "greeting: hey"),
        "rpkg push demo.hello-world.v2 {tmp}/up",
        "rpkg propose demo.hello-world.v2",
        "rpkg approve demo.hello-world.v2",
        "rpkg upgrade blue.hw.v1 --workspace up",
        "rpkg pull blue.hw.up",
    ],
    "rpkg_diff": [
        "rpkg copy demo.hello-world.v1 --workspace v2",
        "rpkg diff demo.hello-world.v2",
        "rpkg pull demo.hello-world.v2 {tmp}/hw",
        write("hw/hello-world.yaml", CM.replace("settings", "hello-world")),
        "rpkg push demo.hello-world.v2 {tmp}/hw",
        "rpkg diff demo.hello-world.v2",
        "rpkg diff demo.hello-world.v1 demo.basens.v1 --exit-code",
        "rpkg diff demo.basens.v1",
    ],
    "rpkg_restore": [
        "rpkg restore demo.basens.main --revision 1 --dry-run",
        "rpkg restore demo.basens.main --revision 1",
        "rpkg restore demo.basens.v1 --revision 7",
        "rpkg diff demo.basens.v1 demo.basens.restore-v1",
    ],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden(name: str, porchctl: Porchctl) -> None:
    results: list[Result] = []
    for step in SCENARIOS[name]:
        if isinstance(step, str):
            results.append(porchctl(step))
        else:
            step(porchctl)
    for r in results:
        assert "Traceback" not in r.stderr, r.stderr
    check(name, results, porchctl)

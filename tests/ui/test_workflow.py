"""The UI end to end in Debian's Chromium against a real ``porch serve``.

An admin creates a draft, edits its files (the render result and a render error are shown),
proposes and approves it, while a read-only user's page shows each change live and offers
only disabled buttons; then the two revisions are compared side by side. Every page gets a
screenshot under ``build/ui-screenshots/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ui.conftest import (
    ADMIN_TOKEN,
    EXPECTED,
    VIEWER_TOKEN,
    UIServer,
    expect,
    new_page,
    shot,
)

pytestmark = pytest.mark.timeout(180)

SET_LABELS = "ghcr.io/kptdev/krm-functions-catalog/set-labels:v0.2.0"
PIPELINE = f"""pipeline:
  mutators:
    - image: {SET_LABELS}
      configMap:
        tier: frontend
"""
CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: ui-settings
data:
  greeting: hello # a comment
  replicas: "3"
"""
MISSING_FN = "pipeline:\n  mutators:\n    - image: example.com/fns/no-such-function:v1\n"
NAME = "demo.ui-app.v1"


@pytest.fixture
def errors() -> Iterator[list[str]]:
    seen: list[str] = []
    yield seen
    unexpected = [e for e in seen if not EXPECTED.search(e)]
    assert not unexpected, unexpected


def test_draft_edit_render_propose_approve_live_and_diff(
    browser: Any, server: UIServer, errors: list[str]
) -> None:
    admin = new_page(browser, server, ADMIN_TOKEN, errors)
    viewer = new_page(browser, server, VIEWER_TOKEN, errors)
    try:
        # repositories with their Ready state
        admin.goto(server.url + "/ui/#/repositories")
        demo = admin.locator("#repositories tr[data-name=demo]")
        expect(demo.locator("td.ready")).to_have_text("Ready")
        shot(admin, "repositories")

        # the viewer watches the package list; a marker shows the page is never reloaded
        viewer.goto(server.url + "/ui/#/packages")
        expect(viewer.locator("#revisions tr[data-name='demo.basens.v1']")).to_be_visible()
        viewer.evaluate("window.__notReloaded = true")
        expect(viewer.get_by_role("button", name="Create draft")).to_be_disabled()
        expect(viewer.get_by_text("viewer may not create package revisions")).to_be_visible()

        # create a draft through the form
        admin.goto(server.url + "/ui/#/packages")
        expect(admin.locator("#revisions tr[data-name='demo.basens.v1']")).to_be_visible()
        admin.get_by_label("Package name").fill("ui-app")
        admin.get_by_label("Description").fill("made in the browser")
        shot(admin, "packages")
        admin.get_by_role("button", name="Create draft").click()
        admin.wait_for_url(re.compile(rf"#/revisions/default/{re.escape(NAME)}$"))
        expect(admin.locator("#summary dd[data-field=lifecycle]")).to_have_text("Draft")
        expect(viewer.locator(f"#revisions tr[data-name='{NAME}']")).to_have_attribute(
            "data-lifecycle", "Draft"
        )

        # edit: a pipeline in the Kptfile and a new file; saving renders
        admin.get_by_role("button", name="Edit files").click()
        editor = admin.get_by_label("Content of Kptfile")
        kptfile = editor.input_value()
        editor.fill(kptfile.rstrip("\n") + "\n" + PIPELINE)
        admin.get_by_label("New file").fill("settings.yaml")
        admin.get_by_role("button", name="Add file").click()
        admin.get_by_label("Content of settings.yaml").fill(CONFIGMAP)
        admin.get_by_role("button", name="Save").click()
        result = admin.locator("#render-result")
        expect(result).to_contain_text("Saved and rendered")
        expect(result).to_contain_text(SET_LABELS)
        expect(result.locator("td.num")).to_have_text("0")
        admin.get_by_role("button", name="settings.yaml").click()
        code = admin.get_by_label("Content of settings.yaml")
        expect(code).to_contain_text("tier: frontend")  # added by the function
        expect(code.locator(".tok-key", has_text="greeting")).to_have_count(1)
        expect(code.locator(".tok-comment")).to_have_text("# a comment")
        expect(code.locator(".tok-string", has_text='"3"')).to_have_count(1)
        shot(admin, "revision-rendered")

        # a failing pipeline: the error is shown and nothing is stored
        admin.get_by_role("button", name="Edit files").click()
        admin.get_by_role("button", name="Kptfile").click()
        editor = admin.get_by_label("Content of Kptfile")
        editor.fill(editor.input_value().split("pipeline:")[0] + MISSING_FN)
        admin.get_by_role("button", name="Save").click()
        failure = admin.locator("#render-result[role=alert]")
        expect(failure).to_contain_text("Not saved: the render failed")
        expect(failure).to_contain_text("no-such-function")
        shot(admin, "render-error")
        admin.get_by_role("button", name="Cancel").click()
        expect(admin.get_by_label("Content of Kptfile")).to_contain_text(SET_LABELS)

        # the read-only user sees the draft with every button disabled
        viewer.goto(server.url + f"/ui/#/revisions/default/{NAME}")
        expect(viewer.locator("#summary dd[data-field=lifecycle]")).to_have_text("Draft")
        expect(viewer.get_by_role("button", name="Propose")).to_be_disabled()
        expect(viewer.get_by_role("button", name="Delete")).to_be_disabled()
        expect(viewer.get_by_role("button", name="Edit files")).to_be_disabled()
        expect(viewer.locator("#why-propose")).to_contain_text("viewer may not update")
        shot(viewer, "revision-read-only")

        # propose: the viewer's page follows live, approval stays disabled for them
        admin.get_by_role("button", name="Propose").click()
        expect(admin.locator("#summary dd[data-field=lifecycle]")).to_have_text("Proposed")
        expect(viewer.locator("#summary dd[data-field=lifecycle]")).to_have_text("Proposed")
        expect(viewer.get_by_role("button", name="Approve")).to_be_disabled()
        expect(viewer.get_by_role("button", name="Reject")).to_be_disabled()

        # approve while the viewer looks at the list: the new revision appears live
        viewer.goto(server.url + "/ui/#/packages")
        row = viewer.locator(f"#revisions tr[data-name='{NAME}']")
        expect(row).to_have_attribute("data-lifecycle", "Proposed")
        admin.get_by_role("button", name="Approve").click()
        expect(admin.locator("#summary dd[data-field=lifecycle]")).to_have_text("Published")
        expect(row).to_have_attribute("data-lifecycle", "Published")
        expect(row.locator("td.num")).to_have_text("1")
        expect(row.locator("td.latest")).to_have_text("latest")
        assert viewer.evaluate("window.__notReloaded === true")
        shot(viewer, "packages-live")
        expect(admin.get_by_role("button", name="Propose delete")).to_be_enabled()

        # compare two revisions side by side
        admin.get_by_role("link", name="Compare with another revision").click()
        admin.get_by_label("Old revision").select_option("default/demo.hello-world.v1")
        expect(admin.get_by_label("New revision")).to_have_value(f"default/{NAME}")
        admin.get_by_role("button", name="Compare").click()
        expect(admin.locator("#diff-summary")).to_contain_text("files changed")
        settings = admin.locator("section.difffile[data-path='settings.yaml']")
        expect(settings.locator("h2 .badge")).to_have_text("added")
        expect(settings.locator("td.add", has_text="greeting: hello")).to_have_count(1)
        kpt = admin.locator("section.difffile[data-path='Kptfile']")
        expect(kpt.locator("td.del", has_text="name: hello-world")).to_have_count(1)
        expect(kpt.locator("td.add", has_text="name: ui-app")).to_have_count(1)
        shot(admin, "diff")
    finally:
        admin.context.close()
        viewer.context.close()

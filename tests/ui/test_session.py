"""Login with a bearer token, signing out, accessibility basics, and the 403 fallback."""

from __future__ import annotations

from typing import Any

from tests.ui.conftest import (
    ADMIN_TOKEN,
    EDITOR_TOKEN,
    EXPECTED,
    RBAC,
    UIServer,
    expect,
    new_page,
    shot,
)

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
    .filter(el => el.type !== 'hidden')
    .filter(el => !el.labels.length && !el.getAttribute('aria-label')
                  && !el.getAttribute('aria-labelledby'))
    .map(el => el.outerHTML)"""
NAMELESS_BUTTONS = """() => [...document.querySelectorAll('button, a[href]')]
    .filter(el => !el.textContent.trim() && !el.getAttribute('aria-label'))
    .map(el => el.outerHTML)"""
OVERFLOWS = "() => document.documentElement.scrollWidth > window.innerWidth"


def check_errors(errors: list[str]) -> None:
    unexpected = [e for e in errors if not EXPECTED.search(e)]
    assert not unexpected, unexpected


def test_login_rejects_a_bad_token_and_sign_out_forgets_it(browser: Any, server: UIServer) -> None:
    errors: list[str] = []
    page = new_page(browser, server, None, errors)
    try:
        token = page.get_by_label("Bearer token")
        expect(token).to_be_focused()
        expect(token).to_have_attribute("type", "password")
        token.fill("wrong-token")
        token.press("Enter")
        expect(page.get_by_role("alert")).to_contain_text("not accepted (401 Unauthorized)")
        shot(page, "login")
        assert page.evaluate("sessionStorage.getItem('porch.token')") is None
        token.fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#whoami")).to_have_text("Signed in as admin")
        assert page.evaluate("sessionStorage.getItem('porch.token')") == ADMIN_TOKEN
        assert page.evaluate("localStorage.length") == 0
        # a reload keeps the session (same tab)
        page.reload()
        expect(page.locator("#whoami")).to_have_text("Signed in as admin")
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_label("Bearer token")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('porch.token')") is None
        expect(page.locator("#nav")).to_be_hidden()
    finally:
        page.context.close()
    check_errors(errors)


def test_labels_keyboard_and_laptop_width(browser: Any, server: UIServer) -> None:
    errors: list[str] = []
    page = new_page(browser, server, ADMIN_TOKEN, errors)
    try:
        # after a load, the first Tab reaches the skip link, which moves focus to the content
        page.goto(server.url + "/ui/#/packages")
        page.reload()
        expect(page.locator("#whoami")).to_be_visible()
        page.keyboard.press("Tab")
        skip = page.get_by_role("link", name="Skip to content")
        expect(skip).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("main")).to_be_focused()
        page.goto(server.url + "/ui/#/packages")
        expect(page.locator("#revisions tbody tr").first).to_be_visible()
        assert page.evaluate(UNLABELLED) == []
        assert page.evaluate(NAMELESS_BUTTONS) == []
        assert not page.evaluate(OVERFLOWS)
        # filter with the keyboard only
        page.get_by_label("Filter").focus()
        page.keyboard.type("hello")
        expect(page.locator("#revisions tbody tr")).not_to_have_count(0)
        for name in page.locator("#revisions tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.name)"
        ):
            assert "hello" in name
        page.get_by_role("link", name="demo.hello-world.v1").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#pr-name")).to_have_text("demo.hello-world.v1")
        readme = page.get_by_role("button", name="README.md")
        readme.focus()
        page.keyboard.press("Enter")
        expect(page.locator(".pane .filename")).to_have_text("README.md")
        expect(readme).to_have_attribute("aria-current", "true")
        assert page.evaluate(UNLABELLED) == []
        assert page.evaluate(NAMELESS_BUTTONS) == []
        assert not page.evaluate(OVERFLOWS)
        page.goto(server.url + "/ui/#/diff?a=default/demo.basens.v1&b=default/demo.hello-world.v1")
        expect(page.locator("#diff-summary")).to_be_visible()
        assert page.evaluate(UNLABELLED) == []
        assert not page.evaluate(OVERFLOWS)
    finally:
        page.context.close()
    check_errors(errors)


def test_a_403_disables_the_button_and_says_why(browser: Any, server: UIServer) -> None:
    """When the policy changes after the page asked, the refusal itself disables the button."""
    errors: list[str] = []
    grant = RBAC + (
        "  - subjects: [{user: editor}]\n"
        '    namespaces: "*"\n'
        "    resources: [packagerevisions, packages, repositories]\n"
        "    verbs: [get, list, watch, update, patch]\n"
    )
    server.rbac.write_text(grant)
    page = new_page(browser, server, EDITOR_TOKEN, errors)
    try:
        page.goto(server.url + "/ui/#/revisions/default/demo.basens.v1")
        button = page.get_by_role("button", name="Propose delete")
        expect(button).to_be_enabled()
        server.rbac.write_text(RBAC + "# editor's grant withdrawn\n")
        button.click()
        message = page.locator("#action-message")
        expect(message).to_have_attribute("role", "alert")
        expect(message).to_contain_text("Propose delete failed: packagerevisions.porch.kpt.dev")
        expect(message).to_contain_text('User "editor" cannot get resource')
        expect(button).to_be_disabled()
        expect(page.locator("#summary dd[data-field=lifecycle]")).to_have_text("Published")
    finally:
        server.rbac.write_text(RBAC)
        page.context.close()
    check_errors(errors)

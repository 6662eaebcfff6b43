// Shell of the UI: session (bearer token), hash routes, navigation and announcements.

import { access, ApiError, setToken } from "./api.js";
import { h, replace } from "./dom.js";
import * as diffview from "./diffview.js";
import * as packages from "./packages.js";
import * as repositories from "./repositories.js";
import * as revision from "./revision.js";

export const session = { user: "", groups: [] };

const ROUTES = [
  [/^\/repositories$/, repositories.render, "Repositories"],
  [/^\/packages$/, packages.render, "Packages"],
  [/^\/revisions\/([^/]+)\/([^/]+)$/, revision.render, "Package revision"],
  [/^\/diff$/, diffview.render, "Compare revisions"],
];

let current = null;
let booted = false; // the first page after a load keeps the browser's focus (skip link first)

function announce(message) {
  const el = document.getElementById("announce");
  el.textContent = "";
  // a fresh text node after a tick makes screen readers repeat identical messages
  setTimeout(() => {
    el.textContent = message;
  }, 30);
}

const ctx = {
  announce,
  navigate(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  session,
};

function parseHash() {
  const raw = location.hash.slice(1) || "/packages";
  const [path, q = ""] = raw.split("?");
  return { path, params: new URLSearchParams(q) };
}

function stopCurrent() {
  if (current && current.stop) current.stop();
  current = null;
}

function showWho() {
  const who = document.getElementById("who");
  const nav = document.getElementById("nav");
  if (!session.user) {
    replace(who);
    nav.hidden = true;
    return;
  }
  nav.hidden = false;
  replace(
    who,
    h("span", { id: "whoami" }, "Signed in as ", h("strong", {}, session.user)),
    " ",
    h("button", { type: "button", class: "link", onclick: logout }, "Sign out"),
  );
}

function logout() {
  setToken("");
  session.user = "";
  showWho();
  stopCurrent();
  showLogin("Signed out.");
}

async function identify() {
  try {
    const who = await access([]);
    session.user = who.user;
    session.groups = who.groups;
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return false;
    throw err;
  }
}

function showLogin(message, isError = false) {
  stopCurrent();
  document.title = "Sign in · Porch";
  const main = document.getElementById("main");
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    required: true,
    "aria-describedby": "token-help",
  });
  const note = h("p", { id: "login-message", role: isError ? "alert" : "status" }, message || "");
  const form = h(
    "form",
    { class: "login card", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Sign in to Porch"),
    h("label", { for: "token" }, "Bearer token"),
    input,
    h(
      "p",
      { id: "token-help", class: "muted" },
      "A token from the server's token file. It is kept in this tab only (sessionStorage).",
    ),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    note,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    note.setAttribute("role", "status");
    note.textContent = "Checking…";
    try {
      if (await identify()) {
        showWho();
        announce(`Signed in as ${session.user}`);
        route();
        return;
      }
      setToken("");
      note.setAttribute("role", "alert");
      note.textContent = "This token was not accepted (401 Unauthorized).";
    } catch (err) {
      setToken("");
      note.setAttribute("role", "alert");
      note.textContent = `Sign-in failed: ${err.message}`;
    }
  });
  replace(main, form);
  input.focus();
}

function route() {
  const { path, params } = parseHash();
  if (!path.startsWith("/")) return; // e.g. the skip link's #main
  stopCurrent();
  if (!session.user) {
    showLogin();
    return;
  }
  const main = document.getElementById("main");
  for (const link of document.querySelectorAll("#nav a")) {
    const active = path.startsWith(link.getAttribute("href").slice(1));
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [pattern, view, title] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    document.title = `${title} · Porch`;
    replace(main);
    current = view(main, ctx, params, ...m.slice(1).map(decodeURIComponent));
    if (booted) main.focus({ preventScroll: true });
    booted = true;
    return;
  }
  replace(main, h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, path), "."));
}

window.addEventListener("hashchange", route);
window.addEventListener("porch:unauthorized", () => {
  if (!session.user) return;
  session.user = "";
  setToken("");
  showWho();
  showLogin("Your token is no longer accepted; sign in again.", true);
});

async function boot() {
  try {
    // With a stored token, or when the server allows anonymous access, no form is needed.
    await identify();
  } catch (err) {
    replace(document.getElementById("main"), h("p", { role: "alert" }, `Cannot reach the server: ${err.message}`));
    return;
  }
  showWho();
  route();
}

boot();

// Package revisions (lifecycle, revision, latest), live; and the form that creates a draft.

import { can, get, LiveList, nsPath, post, PR, REPO } from "./api.js";
import { age, h, isLatest, lifecycleBadge, replace } from "./dom.js";

function order(a, b) {
  const ka = [a.metadata.namespace, a.spec.repository, a.spec.packageName];
  const kb = [b.metadata.namespace, b.spec.repository, b.spec.packageName];
  for (let i = 0; i < ka.length; i++) {
    const c = (ka[i] || "").localeCompare(kb[i] || "");
    if (c) return c;
  }
  // drafts and proposals (revision 0) first, then the newest published
  const ra = a.spec.revision || 0;
  const rb = b.spec.revision || 0;
  if (ra === 0 || rb === 0) return ra === rb ? a.metadata.name.localeCompare(b.metadata.name) : ra === 0 ? -1 : 1;
  return rb - ra;
}

export function revisionLink(pr) {
  const { namespace, name } = pr.metadata;
  return `#/revisions/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
}

function row(pr) {
  return h(
    "tr",
    { "data-name": pr.metadata.name, "data-lifecycle": pr.spec.lifecycle },
    h("th", { scope: "row" }, h("a", { href: revisionLink(pr) }, pr.metadata.name)),
    h("td", {}, pr.spec.packageName),
    h("td", {}, pr.spec.workspaceName),
    h("td", { class: "num" }, String(pr.spec.revision ?? 0)),
    h("td", { class: "latest" }, isLatest(pr) ? h("span", { class: "badge ok", title: "latest revision" }, "latest") : ""),
    h("td", {}, lifecycleBadge(pr.spec.lifecycle)),
    h("td", {}, pr.spec.repository),
    h("td", {}, pr.metadata.namespace),
    h("td", {}, age(pr.metadata.creationTimestamp)),
  );
}

function createForm(ctx, repoFilter) {
  const repoSelect = h("select", { id: "new-repo", name: "repository", required: true });
  const pkg = h("input", { id: "new-package", name: "package", required: true, pattern: "[a-z0-9]([a-z0-9\\-\\/]*[a-z0-9])?", "aria-describedby": "new-help" });
  const ws = h("input", { id: "new-workspace", name: "workspace", required: true, value: "v1", pattern: "[a-z0-9]([a-z0-9\\-]*[a-z0-9])?" });
  const desc = h("input", { id: "new-description", name: "description" });
  const submit = h("button", { type: "submit", class: "primary", disabled: true }, "Create draft");
  const message = h("p", { class: "form-message", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card create", "aria-labelledby": "new-title" },
    h("h2", { id: "new-title" }, "New draft"),
    h("div", { class: "fields" },
      h("div", {}, h("label", { for: "new-repo" }, "Repository"), repoSelect),
      h("div", {}, h("label", { for: "new-package" }, "Package name"), pkg),
      h("div", {}, h("label", { for: "new-workspace" }, "Workspace"), ws),
      h("div", {}, h("label", { for: "new-description" }, "Description"), desc),
      h("div", { class: "submit" }, submit),
    ),
    h("p", { id: "new-help", class: "muted" }, "Creates a Draft with an init task; lower-case letters, digits, '-' and '/' for sub-directories."),
    message,
  );
  let allowed = new Map();
  async function refreshAccess() {
    const ns = (repoSelect.value || "/").split("/")[0];
    if (!allowed.has(ns)) {
      const [ok] = await can([{ verb: "create", group: "porch.kpt.dev", resource: "packagerevisions", namespace: ns }]);
      allowed.set(ns, ok);
    }
    const ok = allowed.get(ns);
    submit.disabled = !ok || !repoSelect.value;
    message.textContent = ok || !repoSelect.value ? "" : `${ctx.session.user} may not create package revisions in namespace "${ns}".`;
  }
  repoSelect.addEventListener("change", refreshAccess);
  get(`${REPO}/repositories`)
    .then((list) => {
      const keys = list.items.map(LiveList.key).sort();
      replace(repoSelect, keys.map((k) => h("option", { value: k, selected: k === repoFilter }, k)));
      if (!keys.length) message.textContent = "No repository you may see: register one first.";
      return refreshAccess();
    })
    .catch((err) => {
      message.textContent = `Cannot list repositories: ${err.message}`;
    });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const [namespace, repository] = repoSelect.value.split("/");
    const body = {
      apiVersion: "porch.kpt.dev/v1alpha1",
      kind: "PackageRevision",
      metadata: { namespace },
      spec: {
        packageName: pkg.value.trim(),
        repository,
        workspaceName: ws.value.trim(),
        lifecycle: "Draft",
        tasks: [{ type: "init", init: { description: desc.value.trim() } }],
      },
    };
    submit.disabled = true;
    message.setAttribute("role", "status");
    message.textContent = "Creating…";
    try {
      const created = await post(nsPath(PR, "packagerevisions", namespace), body);
      ctx.announce(`Created ${created.metadata.name}`);
      ctx.navigate(revisionLink(created));
    } catch (err) {
      message.setAttribute("role", "alert");
      message.textContent = `Not created: ${err.message}`;
      if (err.status === 403) allowed.set(namespace, false);
      refreshAccess();
    }
  });
  return form;
}

export function render(main, ctx, params) {
  const repoFilter = params.get("repo") || "";
  const state = h("span", { class: "live", "aria-live": "polite" }, "Connecting…");
  const filter = h("input", { id: "filter", type: "search", placeholder: "name, package, lifecycle…" });
  const tbody = h("tbody");
  const count = h("span", { class: "muted", id: "count" });
  const table = h(
    "table",
    { class: "grid", id: "revisions" },
    h("caption", { class: "sr-only" }, "Package revisions"),
    h("thead", {}, h("tr", {}, ["Name", "Package", "Workspace", "Revision", "Latest", "Lifecycle", "Repository", "Namespace", "Age"].map((t) => h("th", { scope: "col" }, t)))),
    tbody,
  );
  replace(
    main,
    h("div", { class: "titlebar" }, h("h1", {}, repoFilter ? `Packages in ${repoFilter}` : "Packages"), state),
    h("div", { class: "toolbar" }, h("label", { for: "filter" }, "Filter"), filter, count, repoFilter ? h("a", { href: "#/packages" }, "Show all repositories") : ""),
    table,
    createForm(ctx, repoFilter),
  );
  const rows = new Map(); // key -> {rv, tr}
  let items = new Map();
  function draw() {
    const words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const shown = [...items.values()]
      .filter((pr) => !repoFilter || `${pr.metadata.namespace}/${pr.spec.repository}` === repoFilter)
      .filter((pr) => {
        const text = `${pr.metadata.name} ${pr.spec.packageName} ${pr.spec.lifecycle} ${pr.spec.workspaceName}`.toLowerCase();
        return words.every((w) => text.includes(w));
      })
      .sort(order);
    const wanted = [];
    for (const pr of shown) {
      const key = LiveList.key(pr);
      let entry = rows.get(key);
      if (!entry || entry.rv !== pr.metadata.resourceVersion) {
        const tr = row(pr);
        if (entry) tr.classList.add("flash");
        entry = { rv: pr.metadata.resourceVersion, tr };
        rows.set(key, entry);
      }
      wanted.push(entry.tr);
    }
    // move only what is out of place, so a focused link in an unchanged row keeps focus
    wanted.forEach((tr, i) => {
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    while (tbody.children.length > wanted.length) tbody.lastChild.remove();
    count.textContent = `${shown.length} of ${items.size} revisions`;
  }
  filter.addEventListener("input", draw);
  const live = new LiveList(`${PR}/packagerevisions`, {
    onChange(next, event) {
      items = next;
      if (event && event.type === "ADDED") {
        // a row that is new to this page gets highlighted too
        const key = LiveList.key(event.object);
        if (!rows.has(key)) rows.set(key, { rv: "", tr: null });
      }
      draw();
      if (event && event.type !== "BOOKMARK") {
        const o = event.object;
        ctx.announce(`${o.metadata.name} ${event.type.toLowerCase()}: ${o.spec.lifecycle}`);
      }
    },
    onState(s, err) {
      state.textContent = s === "live" ? "Live" : s === "denied" ? `Not allowed: ${err.message}` : "Reconnecting…";
      state.className = `live ${s}`;
    },
  }).start();
  return { stop: () => live.stop() };
}

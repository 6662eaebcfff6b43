// One package revision: summary, lifecycle actions (RBAC-aware), files with highlighting, and
// editing a draft's files (save = PackageRevisionResources update, with the render result).

import { ApiError, can, del, get, LiveList, nsPath, PR, put } from "./api.js";
import { h, isLatest, lifecycleBadge, replace } from "./dom.js";
import { highlight } from "./yaml.js";

const G = "porch.kpt.dev";

// What each action needs and does; `when` lists the lifecycles it applies to.
const ACTIONS = [
  { id: "propose", label: "Propose", when: ["Draft"], perm: "update", to: "Proposed" },
  { id: "approve", label: "Approve", when: ["Proposed"], perm: "approve", to: "Published", approval: true },
  { id: "reject", label: "Reject", when: ["Proposed"], perm: "update", to: "Draft" },
  { id: "propose-delete", label: "Propose delete", when: ["Published"], perm: "update", to: "DeletionProposed" },
  { id: "reject-delete", label: "Reject deletion", when: ["DeletionProposed"], perm: "approve", to: "Published", approval: true },
  { id: "delete", label: "Delete", when: ["Draft", "Proposed", "DeletionProposed"], perm: "delete", danger: true },
];

function describeTask(pr) {
  const task = (pr.spec.tasks || [])[0];
  if (!task) return "";
  if (task.type === "clone") return `clone of ${JSON.stringify((task.clone || {}).upstreamRef || {})}`;
  if (task.type === "edit") return `copy of ${((task.edit || {}).sourceRef || {}).name || ""}`;
  if (task.type === "upgrade") return "upgrade";
  return task.type;
}

// "tested: True, deployed: no condition" — what approval will check (docs/approval.md)
function gates(pr) {
  const conds = new Map(((pr.status || {}).conditions || []).map((c) => [c.type, c.status]));
  return (pr.spec.readinessGates || [])
    .map((g) => `${g.conditionType}: ${conds.get(g.conditionType) || "no condition"}`)
    .join(", ");
}

function summary(pr) {
  const st = pr.status || {};
  const entries = [
    ["Package", pr.spec.packageName],
    ["Repository", `${pr.metadata.namespace}/${pr.spec.repository}`],
    ["Workspace", pr.spec.workspaceName],
    ["Revision", String(pr.spec.revision ?? 0)],
    ["Lifecycle", lifecycleBadge(pr.spec.lifecycle)],
    ["Latest", isLatest(pr) ? "yes" : "no"],
    ["Created by", describeTask(pr)],
    ["Readiness gates", gates(pr)],
    ["Published by", st.publishedBy || ""],
    ["Published", st.publishTimestamp || ""],
  ].filter(([, v]) => v !== "");
  return h("dl", { class: "summary", id: "summary" }, entries.map(([k, v]) => [h("dt", {}, k), h("dd", { "data-field": k.toLowerCase() }, v)]));
}

function conditions(pr) {
  const list = (pr.status || {}).conditions || [];
  if (!list.length) return "";
  return h(
    "table",
    { class: "grid compact" },
    h("caption", {}, "Conditions"),
    h("thead", {}, h("tr", {}, ["Type", "Status", "Reason", "Message"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, list.map((c) => h("tr", {}, h("td", {}, c.type), h("td", {}, c.status), h("td", {}, c.reason || ""), h("td", {}, c.message || "")))),
  );
}

// The render result of a resources update: one row per function, with its messages.
export function renderResult(prr) {
  const rs = (prr.status || {}).renderStatus || {};
  const items = (rs.result || {}).items || [];
  const box = h("section", { class: "render ok", id: "render-result", "aria-labelledby": "render-title", tabindex: "-1" });
  box.append(h("h3", { id: "render-title" }, "Saved and rendered"));
  if (!items.length) {
    box.append(h("p", {}, "The pipeline ran no function (the Kptfile declares none)."));
    return box;
  }
  box.append(
    h(
      "table",
      { class: "grid compact" },
      h("thead", {}, h("tr", {}, ["Function", "Exit code", "Results"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        items.map((item) =>
          h(
            "tr",
            {},
            h("td", {}, h("code", {}, item.image || item.exec || "")),
            h("td", { class: "num" }, String(item.exitCode ?? 0)),
            h(
              "td",
              {},
              (item.results || []).length
                ? h("ul", {}, item.results.map((r) => h("li", {}, `${r.severity || "info"}: ${r.message || ""}`)))
                : h("span", { class: "muted" }, "no messages"),
              item.stderr ? h("pre", { class: "stderr" }, item.stderr) : "",
            ),
          ),
        ),
      ),
    ),
  );
  return box;
}

function renderError(err) {
  return h(
    "section",
    { class: "render bad", id: "render-result", role: "alert", tabindex: "-1" },
    h("h3", {}, err.status === 422 ? "Not saved: the render failed" : `Not saved (${err.status || "error"})`),
    h("pre", { class: "message" }, err.message),
  );
}

export function render(main, ctx, _params, namespace, name) {
  const base = nsPath(PR, "packagerevisions", namespace, name);
  const prrPath = nsPath(PR, "packagerevisionresources", namespace, name);
  const state = h("span", { class: "live", "aria-live": "polite" }, "Connecting…");
  const head = h("div", { id: "head" });
  const actions = h("div", { class: "actions", id: "actions", role: "group", "aria-label": "Lifecycle actions" });
  const actionMessage = h("p", { id: "action-message", class: "form-message" });
  const filesBox = h("section", { class: "files", "aria-labelledby": "files-title" });
  const resultBox = h("div", { id: "result-slot" });
  replace(
    main,
    h("div", { class: "titlebar" }, h("h1", { id: "pr-name" }, name), state),
    head,
    actions,
    actionMessage,
    resultBox,
    filesBox,
  );

  let pr = null;
  let prr = null;
  let perms = null; // {update, approve, delete, edit}
  const denied = new Set(); // action ids refused with 403 since the page opened
  let selected = "";
  let editing = null; // working copy of the files while editing
  let stale = false;

  async function loadPerms() {
    const checks = [
      { verb: "update", group: G, resource: "packagerevisions", namespace },
      { verb: "update", group: G, resource: "packagerevisions", subresource: "approval", namespace },
      { verb: "delete", group: G, resource: "packagerevisions", namespace },
      { verb: "update", group: G, resource: "packagerevisionresources", namespace },
    ];
    const [update, approve, remove, edit] = await can(checks);
    perms = { update, approve, delete: remove, edit };
  }

  function drawHead() {
    replace(head, summary(pr), conditions(pr), h("p", {}, h("a", { href: `#/diff?b=${encodeURIComponent(`${namespace}/${name}`)}`, id: "compare-link" }, "Compare with another revision")));
    drawActions();
  }

  function drawActions() {
    const lc = pr.spec.lifecycle;
    const buttons = [];
    const notes = [];
    for (const a of ACTIONS.filter((x) => x.when.includes(lc))) {
      const ok = perms && perms[a.perm] && !denied.has(a.id);
      const noteId = `why-${a.id}`;
      buttons.push(
        h(
          "button",
          {
            type: "button",
            id: `action-${a.id}`,
            class: a.danger ? "danger" : a.id === "approve" ? "primary" : "",
            disabled: !ok || editing !== null,
            "aria-describedby": ok ? null : noteId,
            onclick: () => run(a),
          },
          a.label,
        ),
      );
      if (!ok && perms) {
        const what = a.perm === "approve" ? "approve (update packagerevisions/approval)" : `${a.perm} package revisions`;
        notes.push(h("li", { id: noteId }, `${a.label}: ${ctx.session.user} may not ${what} in namespace "${namespace}".`));
      }
    }
    replace(actions, buttons, notes.length ? h("ul", { class: "why muted" }, notes) : "");
  }

  async function run(action) {
    if (action.id === "delete" && !window.confirm(`Delete ${name}?`)) return;
    actionMessage.setAttribute("role", "status");
    actionMessage.textContent = `${action.label}…`;
    try {
      if (action.id === "delete") {
        await del(base);
        actionMessage.textContent = `${name} deleted.`;
        ctx.announce(`${name} deleted`);
        return;
      }
      const fresh = await get(base);
      fresh.spec.lifecycle = action.to;
      pr = await put(action.approval ? `${base}/approval` : base, fresh);
      actionMessage.textContent = `${action.label}: now ${pr.spec.lifecycle}.`;
      ctx.announce(actionMessage.textContent);
      drawHead();
    } catch (err) {
      actionMessage.setAttribute("role", "alert");
      actionMessage.textContent = `${action.label} failed: ${err.message}`;
      if (err instanceof ApiError && err.status === 403) {
        denied.add(action.id);
        drawActions();
      }
    }
  }

  function fileList(files) {
    const paths = Object.keys(files).sort();
    return h(
      "ul",
      { class: "filelist", "aria-label": "Files" },
      paths.map((p) =>
        h("li", {}, h("button", { type: "button", class: "file", "aria-current": p === selected ? "true" : null, onclick: () => { selected = p; drawFiles(); } }, p)),
      ),
    );
  }

  function drawFiles() {
    if (!prr) return;
    const files = editing || prr.spec.resources || {};
    const paths = Object.keys(files);
    if (!paths.includes(selected)) selected = paths.includes("Kptfile") ? "Kptfile" : paths.sort()[0] || "";
    const draft = pr && pr.spec.lifecycle === "Draft";
    const canEdit = draft && perms && perms.edit && !denied.has("edit");
    const tools = [];
    let pane;
    if (editing) {
      const area = h("textarea", { id: "editor", spellcheck: "false", rows: 24, value: files[selected] ?? "" });
      area.addEventListener("input", () => {
        editing[selected] = area.value;
      });
      const newName = h("input", { id: "new-file", placeholder: "path/to/file.yaml" });
      pane = h(
        "div",
        { class: "pane" },
        h("label", { for: "editor" }, `Content of ${selected}`),
        area,
        h(
          "div",
          { class: "toolbar" },
          h("label", { for: "new-file" }, "New file"),
          newName,
          h("button", { type: "button", onclick: () => {
            const p = newName.value.trim();
            if (!p || Object.hasOwn(editing, p)) return;
            editing[p] = "";
            selected = p;
            drawFiles();
            document.getElementById("editor").focus();
          } }, "Add file"),
          h("button", { type: "button", disabled: selected === "Kptfile", onclick: () => {
            delete editing[selected];
            selected = "";
            drawFiles();
          } }, "Remove this file"),
        ),
      );
      tools.push(
        h("button", { type: "button", class: "primary", id: "save", onclick: save }, "Save"),
        h("button", { type: "button", id: "cancel", onclick: () => { editing = null; drawFiles(); drawActions(); } }, "Cancel"),
      );
    } else {
      pane = h(
        "div",
        { class: "pane" },
        h("h3", { class: "filename" }, selected || "No files"),
        selected ? h("pre", { class: "code", tabindex: "0", "aria-label": `Content of ${selected}` }, highlight(files[selected] || "")) : "",
      );
      if (draft) {
        tools.push(
          h("button", { type: "button", id: "edit", disabled: !canEdit, "aria-describedby": canEdit ? null : "why-edit", onclick: () => {
            editing = { ...(prr.spec.resources || {}) };
            drawFiles();
            drawActions();
            document.getElementById("editor").focus();
          } }, "Edit files"),
        );
        if (!canEdit && perms) tools.push(h("span", { id: "why-edit", class: "muted" }, `${ctx.session.user} may not update the resources of package revisions in namespace "${namespace}".`));
      }
    }
    replace(
      filesBox,
      h("div", { class: "titlebar" }, h("h2", { id: "files-title" }, "Files"), h("div", { class: "tools" }, tools)),
      stale ? h("p", { class: "notice", role: "status" }, "This revision changed on the server since you started editing; saving will fail with a conflict.") : "",
      h("div", { class: "filegrid" }, fileList(files), pane),
    );
  }

  async function save() {
    const body = { ...prr, spec: { ...prr.spec, resources: editing } };
    delete body.status;
    const button = document.getElementById("save");
    button.disabled = true;
    try {
      prr = await put(prrPath, body);
      editing = null;
      stale = false;
      replace(resultBox, renderResult(prr));
      ctx.announce("Saved and rendered");
    } catch (err) {
      replace(resultBox, renderError(err));
      if (err instanceof ApiError && err.status === 403) denied.add("edit");
      if (err instanceof ApiError && err.status === 422 && /pushed to remote despite/i.test(err.message)) {
        editing = null;
        prr = await get(prrPath);
      }
    }
    drawFiles();
    drawActions();
    document.getElementById("render-result").focus();
  }

  async function loadFiles() {
    try {
      prr = await get(prrPath);
      drawFiles();
    } catch (err) {
      replace(filesBox, h("p", { role: "alert" }, `Cannot read the files: ${err.message}`));
    }
  }

  let lastRv = "";
  const live = new LiveList(nsPath(PR, "packagerevisions", namespace), {
    fieldSelector: `metadata.name=${name}`,
    async onChange(items, event) {
      const next = items.get(`${namespace}/${name}`);
      if (!next) {
        if (pr) {
          pr = null;
          replace(actions);
          replace(head, h("p", { role: "alert", class: "notice" }, "This package revision no longer exists."));
        } else {
          replace(head, h("p", { role: "alert" }, `No package revision ${name} in namespace ${namespace}.`));
        }
        return;
      }
      pr = next;
      if (!perms) await loadPerms();
      drawHead();
      if (next.metadata.resourceVersion !== lastRv) {
        lastRv = next.metadata.resourceVersion;
        if (editing) {
          stale = event !== null && !(prr && prr.metadata.resourceVersion === lastRv);
          drawFiles();
        } else {
          await loadFiles();
        }
      }
    },
    onState(s, err) {
      state.textContent = s === "live" ? "Live" : s === "denied" ? `Not allowed: ${err.message}` : "Reconnecting…";
      state.className = `live ${s}`;
    },
  }).start();
  return { stop: () => live.stop() };
}

// Side-by-side diff of the files of any two package revisions.

import { get, LiveList, nsPath, PR } from "./api.js";
import { diffFiles } from "./diff.js";
import { h, replace } from "./dom.js";

const CONTEXT = 3;

function label(pr) {
  const rev = pr.spec.revision ? ` r${pr.spec.revision}` : "";
  return `${pr.metadata.namespace}/${pr.metadata.name} (${pr.spec.lifecycle}${rev})`;
}

function cell(side, cls) {
  if (!side) return [h("td", { class: "ln" }), h("td", { class: `code empty` })];
  return [h("td", { class: "ln" }, String(side.n)), h("td", { class: `code ${cls}` }, side.text)];
}

// Rows with long unchanged runs folded to CONTEXT lines around each change.
function fileTable(file) {
  const body = h("tbody");
  const { rows } = file;
  const keep = rows.map(() => false);
  rows.forEach((r, i) => {
    if (r.kind !== "same") for (let k = Math.max(0, i - CONTEXT); k <= Math.min(rows.length - 1, i + CONTEXT); k++) keep[k] = true;
  });
  let i = 0;
  while (i < rows.length) {
    if (!keep[i]) {
      let j = i;
      while (j < rows.length && !keep[j]) j++;
      body.append(h("tr", { class: "fold" }, h("td", { colspan: 4 }, `${j - i} unchanged line${j - i === 1 ? "" : "s"}`)));
      i = j;
      continue;
    }
    const r = rows[i];
    const left = r.kind === "same" ? "same" : "del";
    const right = r.kind === "same" ? "same" : "add";
    body.append(h("tr", { class: `row-${r.kind}` }, cell(r.left, left), cell(r.right, right)));
    i++;
  }
  return h(
    "table",
    { class: "diff" },
    h("caption", { class: "sr-only" }, `Changes in ${file.path}: old on the left, new on the right`),
    h("colgroup", {}, h("col", { class: "ln" }), h("col"), h("col", { class: "ln" }), h("col")),
    h("thead", {}, h("tr", {}, h("th", { scope: "col", colspan: 2 }, "Old"), h("th", { scope: "col", colspan: 2 }, "New"))),
    body,
  );
}

export function render(main, ctx, params) {
  const a = h("select", { id: "diff-old", name: "a" });
  const b = h("select", { id: "diff-new", name: "b" });
  const out = h("div", { id: "diff-output", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "toolbar card", "aria-label": "Revisions to compare" },
    h("label", { for: "diff-old" }, "Old revision"),
    a,
    h("label", { for: "diff-new" }, "New revision"),
    b,
    h("button", { type: "submit", class: "primary" }, "Compare"),
  );
  replace(main, h("h1", {}, "Compare revisions"), form, out);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    ctx.navigate(`#/diff?a=${encodeURIComponent(a.value)}&b=${encodeURIComponent(b.value)}`);
  });

  let stopped = false;
  (async () => {
    const list = await get(`${PR}/packagerevisions`);
    if (stopped) return;
    const prs = list.items.sort((x, y) => LiveList.key(x).localeCompare(LiveList.key(y)));
    const byKey = new Map(prs.map((p) => [LiveList.key(p), p]));
    let wantB = params.get("b") || "";
    let wantA = params.get("a") || "";
    if (wantB && !wantA && byKey.has(wantB)) {
      // default: the latest published revision of the same package, else any other one of it
      const target = byKey.get(wantB);
      const same = prs.filter((p) => LiveList.key(p) !== wantB && p.metadata.namespace === target.metadata.namespace && p.spec.repository === target.spec.repository && p.spec.packageName === target.spec.packageName);
      const pick = same.find((p) => (p.metadata.labels || {})["kpt.dev/latest-revision"] === "true") || same[0];
      if (pick) wantA = LiveList.key(pick);
    }
    for (const [sel, want] of [[a, wantA], [b, wantB]]) {
      replace(sel, h("option", { value: "" }, "Choose a revision"), prs.map((p) => h("option", { value: LiveList.key(p), selected: LiveList.key(p) === want }, label(p))));
    }
    if (!wantA || !wantB) {
      replace(out, h("p", { class: "muted" }, "Choose two revisions to compare their files."));
      return;
    }
    replace(out, h("p", { class: "muted" }, "Loading…"));
    const read = (key) => {
      const [ns, name] = key.split("/");
      return get(nsPath(PR, "packagerevisionresources", ns, name));
    };
    const [oldR, newR] = await Promise.all([read(wantA), read(wantB)]);
    if (stopped) return;
    const files = diffFiles(oldR.spec.resources || {}, newR.spec.resources || {});
    const changed = files.filter((f) => f.status !== "same");
    const plus = changed.reduce((n, f) => n + f.added, 0);
    const minus = changed.reduce((n, f) => n + f.removed, 0);
    const same = files.filter((f) => f.status === "same").map((f) => f.path);
    replace(
      out,
      h("p", { id: "diff-summary" }, `${changed.length} file${changed.length === 1 ? "" : "s"} changed, ${plus} line${plus === 1 ? "" : "s"} added, ${minus} removed.`),
      changed.map((f) =>
        h("section", { class: "difffile", "data-path": f.path }, h("h2", {}, f.path, " ", h("span", { class: `badge st-${f.status}` }, f.status)), fileTable(f)),
      ),
      same.length ? h("p", { class: "muted" }, `Unchanged: ${same.join(", ")}`) : "",
    );
  })().catch((err) => {
    if (!stopped) replace(out, h("p", { role: "alert" }, `Cannot compare: ${err.message}`));
  });
  return { stop: () => { stopped = true; } };
}

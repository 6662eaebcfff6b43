// Repositories with their Ready condition, kept live by a watch.

import { LiveList, REPO } from "./api.js";
import { age, h, replace } from "./dom.js";

function ready(repo) {
  const cond = ((repo.status || {}).conditions || []).find((c) => c.type === "Ready");
  if (!cond) return h("span", { class: "badge unknown" }, "Unknown");
  if (cond.status === "True") return h("span", { class: "badge ok" }, "Ready");
  return h(
    "span",
    {},
    h("span", { class: "badge bad" }, cond.status === "False" ? "Not ready" : cond.status),
    " ",
    h("span", { class: "muted" }, [cond.reason, cond.message].filter(Boolean).join(": ")),
  );
}

function address(repo) {
  const spec = repo.spec || {};
  if (spec.git) return `${spec.git.repo}${spec.git.branch ? ` @ ${spec.git.branch}` : ""}${spec.git.directory ? ` /${spec.git.directory}` : ""}`;
  if (spec.oci) return spec.oci.registry;
  return "";
}

export function render(main, ctx) {
  const state = h("span", { class: "live", "aria-live": "polite" }, "Connecting…");
  const tbody = h("tbody");
  replace(
    main,
    h("div", { class: "titlebar" }, h("h1", {}, "Repositories"), state),
    h(
      "table",
      { class: "grid", id: "repositories" },
      h("caption", { class: "sr-only" }, "Registered repositories and whether they are ready"),
      h(
        "thead",
        {},
        h("tr", {}, ["Name", "Namespace", "Type", "Address", "Ready", "Revisions", "Deployment", "Age"].map((t) => h("th", { scope: "col" }, t))),
      ),
      tbody,
    ),
  );
  const live = new LiveList(`${REPO}/repositories`, {
    onChange(items) {
      const repos = [...items.values()].sort((a, b) =>
        LiveList.key(a).localeCompare(LiveList.key(b)),
      );
      replace(
        tbody,
        repos.length
          ? repos.map((r) =>
              h(
                "tr",
                { "data-name": r.metadata.name },
                h(
                  "th",
                  { scope: "row" },
                  h(
                    "a",
                    { href: `#/packages?repo=${encodeURIComponent(LiveList.key(r))}` },
                    r.metadata.name,
                  ),
                ),
                h("td", {}, r.metadata.namespace),
                h("td", {}, (r.spec || {}).type || ""),
                h("td", { class: "addr" }, address(r)),
                h("td", { class: "ready" }, ready(r)),
                h("td", { class: "num" }, String((r.status || {}).packageCount ?? "")),
                h("td", {}, (r.spec || {}).deployment ? "yes" : "no"),
                h("td", {}, age(r.metadata.creationTimestamp)),
              ),
            )
          : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No repositories.")),
      );
    },
    onState(s, err) {
      state.textContent = s === "live" ? "Live" : s === "denied" ? `Not allowed: ${err.message}` : "Reconnecting…";
      state.className = `live ${s}`;
    },
  }).start();
  return { stop: () => live.stop() };
}

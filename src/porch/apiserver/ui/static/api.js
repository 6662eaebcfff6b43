// The JSON API as the UI uses it: bearer token, errors as Status, list-then-watch streams.

const TOKEN_KEY = "porch.token";

export const PR = "/apis/porch.kpt.dev/v1alpha1";
export const REPO = "/apis/config.porch.kpt.dev/v1alpha1";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, reason, message, body) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.body = body;
  }
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

async function failure(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  const message = (body && body.message) || `${res.status} ${res.statusText}`;
  const reason = (body && body.reason) || "";
  const err = new ApiError(res.status, reason, message, body);
  if (res.status === 401) window.dispatchEvent(new CustomEvent("porch:unauthorized"));
  return err;
}

export async function request(method, path, body, { signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(path, init);
  if (!res.ok) throw await failure(res);
  return res.status === 204 ? null : res.json();
}

export const get = (path, opts) => request("GET", path, undefined, opts);
export const put = (path, body) => request("PUT", path, body);
export const post = (path, body) => request("POST", path, body);
export const del = (path) => request("DELETE", path);

export function nsPath(base, plural, namespace, name, sub) {
  let p = namespace ? `${base}/namespaces/${encodeURIComponent(namespace)}/${plural}` : `${base}/${plural}`;
  if (name) p += `/${encodeURIComponent(name)}`;
  if (sub) p += `/${sub}`;
  return p;
}

// Which of the given checks the caller may do: [{verb, group, resource, subresource?, namespace?}]
export async function access(checks) {
  return request("POST", "/ui/api/access", { checks });
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// A list kept current by a watch: `onChange(items: Map<key, object>, event)` after the list and
// after every event. Reconnects from the last resourceVersion; re-lists on 410 Expired.
export class LiveList {
  constructor(path, { fieldSelector = "", onChange, onState } = {}) {
    this.path = path;
    this.fieldSelector = fieldSelector;
    this.onChange = onChange || (() => {});
    this.onState = onState || (() => {});
    this.items = new Map();
    this.rv = "";
    this.stopped = false;
    this.controller = null;
  }

  static key(obj) {
    return `${obj.metadata.namespace || ""}/${obj.metadata.name}`;
  }

  start() {
    this.loop();
    return this;
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async list() {
    const body = await get(this.path + query({ fieldSelector: this.fieldSelector }));
    this.items = new Map(body.items.map((o) => [LiveList.key(o), o]));
    this.rv = body.metadata.resourceVersion;
    this.onChange(this.items, null);
  }

  async loop() {
    let delay = 500;
    let needList = true;
    while (!this.stopped) {
      try {
        if (needList) {
          await this.list();
          needList = false;
        }
        this.onState("live");
        const expired = await this.watch();
        if (expired) needList = true;
        delay = 500;
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof ApiError && err.status === 410) {
          needList = true;
        } else {
          this.onState("reconnecting", err);
          if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
            this.onState("denied", err);
            return;
          }
        }
      }
      if (this.stopped) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }

  // Reads one watch stream to its end; true when the server said the resourceVersion expired.
  async watch() {
    this.controller = new AbortController();
    const url =
      this.path +
      query({
        watch: "1",
        resourceVersion: this.rv,
        allowWatchBookmarks: "true",
        fieldSelector: this.fieldSelector,
      });
    const res = await fetch(url, { headers: headers(), signal: this.controller.signal });
    if (!res.ok) throw await failure(res);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffered += value;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line && this.apply(JSON.parse(line))) return true;
      }
    }
  }

  apply(event) {
    const obj = event.object || {};
    if (event.type === "ERROR") return obj.code === 410;
    if (obj.metadata && obj.metadata.resourceVersion) this.rv = obj.metadata.resourceVersion;
    if (event.type === "BOOKMARK") return false;
    const key = LiveList.key(obj);
    if (event.type === "DELETED") this.items.delete(key);
    else this.items.set(key, obj);
    this.onChange(this.items, event);
    return false;
  }
}

// Booleans for `checks`, all false when the review itself fails (buttons stay disabled).
export async function can(checks) {
  try {
    return (await access(checks)).allowed;
  } catch {
    return checks.map(() => false);
  }
}

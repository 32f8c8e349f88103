// The GUI's core: the API client (the user's token as a bearer header), a tiny element builder, the router.
// Every value from the API reaches the page through textContent (MG.h), never through innerHTML.
"use strict";

(() => {
  const TOKEN_KEY = "meshgate.token";
  const MG = (window.MG = { role: document.body.dataset.role, pages: {}, order: [] });

  MG.token = () => sessionStorage.getItem(TOKEN_KEY) || "";

  class ApiError extends Error {
    constructor(status, title, detail) {
      super(detail ? `${title}: ${detail}` : title);
      this.status = status;
      this.title = title;
      this.detail = detail;
    }
  }
  MG.ApiError = ApiError;

  function url(path, params) {
    const u = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, v);
    }
    return u;
  }

  function headers() {
    const out = { Accept: "application/json" };
    const token = MG.token();
    if (token) out.Authorization = `Bearer ${token}`;
    return out;
  }

  async function failure(r) {
    let body = {};
    try {
      body = await r.json();
    } catch (_) {
      // not Kuma's error body: the status line says enough
    }
    return new ApiError(r.status, body.title || r.statusText, body.detail || "");
  }

  // GET a JSON document from the API, as the signed-in user (or the localhost admin, with no token).
  MG.api = async (path, params, signal) => {
    const r = await fetch(url(path, params), { headers: headers(), cache: "no-store", credentials: "omit", signal });
    if (!r.ok) throw await failure(r);
    return r.json();
  };

  // GET a JSON document's text (the YAML page parses it itself, to keep floats apart from integers).
  MG.apiText = async (path, params, signal) => {
    const r = await fetch(url(path, params), { headers: headers(), cache: "no-store", credentials: "omit", signal });
    if (!r.ok) throw await failure(r);
    return r.text();
  };

  // GET an NDJSON stream (the global's /kds/watch), calling onDoc per line until the stream ends or signal aborts.
  MG.stream = async (path, params, signal, onDoc) => {
    const r = await fetch(url(path, params), { headers: headers(), cache: "no-store", credentials: "omit", signal });
    if (!r.ok) throw await failure(r);
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line) onDoc(JSON.parse(line));
      }
    }
  };

  // h("td", {class: "x", "data-zone": z}, "text", child, ...): an element; strings become text nodes.
  MG.h = (tag, attrs, ...children) => {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "value") el.value = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  };
  const h = MG.h;

  // A table: rows are arrays of cells, or {cells, class, attrs}; a cell is text, a Node, or {text|node, class}.
  MG.table = (columns, rows, empty) => {
    const body = rows.map((row) => {
      const spec = Array.isArray(row) ? { cells: row } : row;
      return h(
        "tr",
        { class: spec.class, ...(spec.attrs || {}) },
        spec.cells.map((c) =>
          c !== null && typeof c === "object" && !(c instanceof Node) ? h("td", { class: c.class, ...(c.attrs || {}) }, c.node ?? c.text) : h("td", {}, c),
        ),
      );
    });
    if (!rows.length) body.push(h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty || "none")));
    return h("table", {}, h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))), h("tbody", {}, body));
  };

  MG.ago = (ts) => {
    if (!ts) return "-";
    const s = Math.max(0, (Date.now() - Date.parse(ts)) / 1000);
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m${Math.floor(s % 60)}s ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m ago`;
    return `${Math.floor(s / 86400)}d ago`;
  };

  MG.tags = (tags) => Object.entries(tags || {}).map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`));

  // The link to a page: #/name?k=v
  MG.href = (name, params) => {
    const q = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== undefined && v !== "")).toString();
    return `#/${name}${q ? "?" + q : ""}`;
  };
  MG.link = (text, name, params) => h("a", { href: MG.href(name, params) }, text);
  // The YAML page of a resource at its API path.
  MG.yamlLink = (text, path) => MG.link(text, "yaml", { path });

  // Every mesh's name (the pages that list mesh-scoped kinds walk them).
  MG.meshes = async (signal) => (await MG.api("/meshes", { size: 1000 }, signal)).items.map((m) => m.name);

  // A page: {title, roles, render(params, signal) -> Node, poll: ms} (rendered again every poll), or
  // {title, roles, mount(root, params, signal)} (a page with its own form and updates).
  MG.page = (name, spec) => {
    MG.pages[name] = spec;
    MG.order.push(name);
  };

  const main = document.getElementById("main");
  const problem = document.getElementById("problem");
  const updated = document.getElementById("updated");

  function showProblem(err) {
    problem.hidden = false;
    if (err instanceof ApiError && err.status === 401) {
      problem.textContent = `Sign in: paste a user token above. ${err.detail || err.title}`;
    } else if (err instanceof ApiError) {
      problem.textContent = `${err.status} ${err.message}`;
    } else {
      problem.textContent = `The control plane did not answer: ${err.message || err}`;
    }
  }
  MG.showProblem = showProblem;
  MG.clearProblem = () => {
    problem.hidden = true;
    problem.textContent = "";
  };

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [name, query] = raw.split("?", 2);
    return { name, params: Object.fromEntries(new URLSearchParams(query || "")) };
  }

  let generation = 0;
  let controller = null;
  let timer = null;

  async function show() {
    const visible = MG.order.filter((n) => MG.pages[n].roles.includes(MG.role));
    let { name, params } = parseHash();
    if (!visible.includes(name)) name = visible[0];
    const page = MG.pages[name];
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("current", a.dataset.page === name);
    document.title = `${page.title} · meshgate`;
    if (controller) controller.abort();
    clearTimeout(timer);
    const gen = ++generation;
    controller = new AbortController();
    const signal = controller.signal;
    MG.clearProblem();
    if (page.mount) {
      const root = h("section", { "data-page": name });
      main.replaceChildren(root);
      try {
        await page.mount(root, params, signal);
      } catch (err) {
        if (gen === generation && err.name !== "AbortError") showProblem(err);
      }
      return;
    }
    const tick = async () => {
      try {
        const node = await page.render(params, signal);
        if (gen !== generation) return;
        main.replaceChildren(h("section", { "data-page": name }, node));
        MG.clearProblem();
        updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      } catch (err) {
        if (gen !== generation || err.name === "AbortError") return;
        showProblem(err);
      }
      if (page.poll && gen === generation) timer = setTimeout(tick, page.poll);
    };
    await tick();
  }

  function who() {
    document.getElementById("who").textContent = MG.token() ? "token in use" : "no token (localhost admin)";
  }

  function start() {
    const nav = document.getElementById("nav");
    for (const name of MG.order) {
      const page = MG.pages[name];
      if (page.roles.includes(MG.role)) nav.append(h("a", { href: `#/${name}`, "data-page": name }, page.title));
    }
    document.getElementById("plane").textContent = MG.role === "global" ? "global control plane" : "zone control plane";
    document.getElementById("auth").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = document.getElementById("token");
      const token = input.value.trim();
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      input.value = "";
      who();
      show();
    });
    document.getElementById("forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      who();
      show();
    });
    window.addEventListener("hashchange", show);
    who();
    show();
  }
  MG.start = start;
})();

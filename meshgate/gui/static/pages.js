// The GUI's pages. Each reads the same API endpoints meshgatectl reads; see README "GUI" for which is which.
"use strict";

(() => {
  const { h, api, table, ago, tags, link, yamlLink } = MG;
  const BOTH = ["global", "zone"];

  // -- zones (global): status, replica, per-kind sync both ways, NACKs with reasons, stall warnings ----------

  const openSubs = (z) => (z.zoneInsight.subscriptions || []).filter((s) => !s.disconnectTime);
  const counts = (st) =>
    st ? `${st.responsesSent} / ${st.responsesAcknowledged} / ${st.responsesRejected}` : "-";

  function nackText(nack) {
    if (!nack) return "";
    const reasons = Object.entries(nack.resources || {}).map(([name, reason]) => `${name}: ${reason}`);
    return reasons.length ? reasons.join("; ") : nack.error || "rejected";
  }

  function zoneRow(z) {
    const open = openSubs(z);
    const subs = z.zoneInsight.subscriptions || [];
    const last = subs[subs.length - 1];
    const replica = open.length ? open[open.length - 1].globalInstanceId : "-";
    const since = open.length
      ? `connected ${ago(open.map((s) => s.connectTime).sort()[0])}`
      : last && last.disconnectTime
        ? `disconnected ${ago(last.disconnectTime)}`
        : "never connected";
    let nacks = 0;
    let updates = 0;
    for (const s of open) {
      updates += Number(s.status.total.responsesSent);
      nacks += Number(s.status.total.responsesRejected);
    }
    const warnings = [...new Set([...(z.warnings || []), ...open.flatMap((s) => s.warnings || [])])];
    return {
      class: `zone ${z.status}`,
      attrs: { "data-zone": z.name, "data-status": z.status },
      cells: [
        link(z.name, "zones", { zone: z.name }),
        { text: z.status, class: `status ${z.status}` },
        replica,
        since,
        ago(z.healthCheck && z.healthCheck.lastSeen),
        { text: String(updates), class: "num" },
        { text: String(nacks), class: nacks ? "num bad" : "num" },
        { node: warnings.map((w) => h("div", { class: "warning" }, w)) },
      ],
    };
  }

  // The streams a zone's sync table shows: the open ones, or, for a zone with none, the last closed stream in
  // each direction (its counters and last NACK say where it stood when it went away).
  function shownSubs(z) {
    const open = openSubs(z);
    if (open.length) return { subs: open, closed: false };
    const last = {};
    for (const s of z.zoneInsight.subscriptions || []) last[s.direction] = s;
    return { subs: Object.values(last), closed: true };
  }

  function syncTable(z) {
    const { subs: open, closed } = shownSubs(z);
    const down = open.find((s) => s.direction === "global-to-zone");
    const up = open.find((s) => s.direction === "zone-to-global");
    const kinds = [...new Set([...Object.keys(down ? down.status.stat : {}), ...Object.keys(up ? up.status.stat : {})])].sort();
    const rows = kinds.map((kind) => {
      const d = down && down.status.stat[kind];
      const u = up && up.status.stat[kind];
      const nack = (d && d.lastNack) || (u && u.lastNack);
      const rejected = (d && Number(d.responsesRejected) > 0) || (u && Number(u.responsesRejected) > 0);
      const inFlight = !closed && d && d.inFlightSince ? `nonce ${d.inFlightNonce} since ${ago(d.inFlightSince)}` : "";
      return {
        class: nack && rejected ? "nack" : "",
        attrs: { "data-kind": kind },
        cells: [
          kind,
          { text: counts(d), class: "num" },
          inFlight,
          { text: d && d.lastAckLatencyMs !== undefined ? `${d.lastAckLatencyMs} ms` : "", class: "nowrap" },
          { text: counts(u), class: "num" },
          { text: nackText(nack), class: "nack-reason" },
        ],
      };
    });
    const streams = open.map(
      (s) =>
        `${s.direction} ${s.id} from ${s.zoneInstanceId || "?"} (${s.peer || "?"})` +
        (s.disconnectTime ? `, closed ${ago(s.disconnectTime)}` : ""),
    );
    return h(
      "div",
      { class: "card", "data-sync": z.name, "data-closed": closed && open.length ? "true" : "false" },
      h("h3", {}, closed && open.length ? `${z.name}: sync by kind, as its last streams left it` : `${z.name}: sync by kind`),
      h("div", { class: "muted" }, streams.length ? streams.join(" · ") : "no KDS stream yet"),
      table(
        ["kind", "global → zone sent / ACK / NACK", "in flight", "last ACK", "zone → global sent / ACK / NACK", "last NACK"],
        rows,
        "no open stream",
      ),
    );
  }

  MG.page("zones", {
    title: "Zones",
    roles: ["global"],
    poll: 1000,
    async render(params, signal) {
      const body = await api("/zones/_overview", {}, signal);
      const zones = params.zone ? body.items.filter((z) => z.name === params.zone) : body.items;
      const online = body.items.filter((z) => z.status === "online").length;
      return h(
        "div",
        {},
        h("h2", {}, `Zones (${online} of ${body.items.length} online)`),
        table(
          ["zone", "status", "global replica", "stream", "last health ping", "updates", "NACKs", "warnings"],
          body.items.map(zoneRow),
          "no zone has connected yet",
        ),
        h("div", {}, zones.map(syncTable)),
      );
    },
  });

  // -- this zone (zone): its KDS stream to the global, and the proxies it serves -----------------------------

  MG.page("zone", {
    title: "This zone",
    roles: ["zone"],
    poll: 1000,
    async render(params, signal) {
      const [kds, xds] = await Promise.all([api("/status/kds", {}, signal), api("/xds/proxies", {}, signal)]);
      const status = kds.connected ? "online" : "offline";
      const proxies = xds.proxies.map((p) => {
        const types = (p.streams[0] || p.last || { types: {} }).types;
        const nacked = Object.entries(types).filter(([, t]) => t.lastNack);
        return {
          class: p.connected ? "" : "offline",
          attrs: { "data-proxy": p.dataplane },
          cells: [
            yamlLink(`${p.mesh}/${p.dataplane}`, `/meshes/${p.mesh}/dataplanes/${p.dataplane}`),
            { text: p.connected ? "online" : "offline", class: `status ${p.connected ? "online" : ""}` },
            Object.entries(types).map(([t, s]) => `${t} ${s.sent}/${s.acked}/${s.nacked}`).join("  "),
            { text: nacked.map(([t, s]) => `${t}: ${s.lastNack.error}`).join("; "), class: "nack-reason" },
          ],
        };
      });
      return h(
        "div",
        {},
        h("h2", {}, `Zone ${kds.zone}`),
        table(
          ["zone", "KDS to global", "global", "connected", "reconnects", "last error", "synced kinds"],
          [
            {
              class: status,
              attrs: { "data-zone": kds.zone, "data-status": status },
              cells: [
                kds.zone,
                { text: status, class: `status ${status}` },
                kds.globalAddress,
                kds.connectedAt ? ago(kds.connectedAt) : "-",
                String(kds.connects),
                { text: kds.lastError || "", class: "nack-reason" },
                `${kds.syncedKinds.length}${kds.synced ? " (all)" : ""}`,
              ],
            },
          ],
        ),
        h("h3", {}, "Envoy proxies (xDS: sent / ACK / NACK per type)"),
        table(["dataplane", "xDS stream", "types", "last NACK"], proxies, "no proxy has connected"),
      );
    },
  });

  // -- meshes -----------------------------------------------------------------------------------------------

  MG.page("meshes", {
    title: "Meshes",
    roles: BOTH,
    poll: 2000,
    async render(params, signal) {
      const body = await api("/meshes", { size: 1000 }, signal);
      const rows = body.items.map((m) => {
        const mtls = m.mtls && m.mtls.enabledBackend ? `mTLS: ${m.mtls.enabledBackend}` : "no mTLS";
        return [yamlLink(m.name, `/meshes/${m.name}`), mtls, ago(m.creationTime), ago(m.modificationTime)];
      });
      return h("div", {}, h("h2", {}, "Meshes"), table(["mesh", "mTLS", "created", "modified"], rows, "no mesh"));
    },
  });

  // -- gateways: listeners, hostnames, routes bound, data planes serving each listener per zone ----------------

  async function overviewsByName(signal) {
    const body = await api("/dataplanes/_overview", { size: 1000 }, signal);
    return Object.fromEntries(body.items.map((d) => [`${d.mesh}/${d.name}`, d]));
  }

  // The proxy's own state from its DataplaneInsight (online while a subscription has no disconnectTime, as
  // Kuma's IsOnline); on the global that insight comes from the zone, so an offline zone is said too: what the
  // insight says is then as the zone last sent it.
  function dataplaneState(d) {
    if (!d) return "unknown";
    const subs = (d.dataplaneInsight && d.dataplaneInsight.subscriptions) || [];
    const zoneOffline = d.zoneStatus === "offline";
    if (subs.length) {
      const proxy = subs.some((s) => !s.disconnectTime) ? "online" : "offline";
      return zoneOffline ? `${proxy}, zone offline` : proxy;
    }
    if (d.zoneStatus) return zoneOffline ? "zone offline" : "zone online";
    return "registered";
  }

  function gatewayCard(gw, served, overviews) {
    const serving = served.items;
    const byListener = new Map();
    for (const item of serving.length ? serving : [{ dataplane: null, zone: "", ...served.unserved }]) {
      for (const l of item.listeners) {
        const entry = byListener.get(l.port) || { routes: new Map(), dataplanes: [] };
        for (const hn of l.hostnames) {
          const set = entry.routes.get(hn.hostname) || new Set();
          hn.routes.forEach((r) => set.add(JSON.stringify([r.name, r.displayName])));
          entry.routes.set(hn.hostname, set);
        }
        if (item.dataplane) entry.dataplanes.push(item);
        byListener.set(l.port, entry);
      }
    }
    const listeners = (gw.conf.listeners || []).map((l) => {
      const entry = byListener.get(l.port) || { routes: new Map(), dataplanes: [] };
      const routes = [...entry.routes.entries()].map(([host, set]) =>
        h("div", {}, h("span", { class: "muted" }, `${host}: `), [...set].length ? [...set].map(JSON.parse).map(([name, display], i) => [i ? ", " : "", yamlLink(display, `/meshes/${gw.mesh}/meshgatewayroutes/${name}`)]) : "no route"),
      );
      const dps = entry.dataplanes.map((item) => {
        const d = overviews[`${item.dataplane.mesh}/${item.dataplane.name}`];
        const state = dataplaneState(d);
        return h("div", { class: state.includes("offline") ? "nack-reason" : "" }, `${item.dataplane.displayName} (${item.zone || "?"}, ${state})`);
      });
      return {
        attrs: { "data-port": l.port },
        cells: [
          String(l.port),
          l.protocol || "HTTP",
          l.hostname || "*",
          l.tls ? `${l.tls.mode || "TERMINATE"} ${(l.tls.certificates || []).map((c) => c.secret || "").join(" ")}` : "",
          { node: tags(l.tags) },
          { node: routes.length ? routes : "no route bound" },
          { node: dps.length ? dps : h("span", { class: "muted" }, "no data plane") },
        ],
      };
    });
    const problems = [...new Set(serving.flatMap((i) => i.problems).concat(served.unserved ? served.unserved.problems : []))];
    return h(
      "div",
      { class: "card", "data-gateway": `${gw.mesh}/${gw.name}` },
      h("div", { class: "split" }, h("h3", {}, yamlLink(`${gw.mesh}/${gw.name}`, `/meshes/${gw.mesh}/meshgateways/${gw.name}`)),
        h("span", {}, "selects ", (gw.selectors || []).map((s) => tags(s.match)))),
      table(["port", "protocol", "hostname", "TLS", "tags", "routes bound", "data planes serving"], listeners, "no listener"),
      problems.map((p) => h("div", { class: "warning" }, p)),
    );
  }

  MG.page("gateways", {
    title: "Gateways",
    roles: BOTH,
    poll: 2000,
    async render(params, signal) {
      const [gateways, overviews] = await Promise.all([api("/meshgateways", { size: 1000 }, signal), overviewsByName(signal)]);
      const cards = await Promise.all(
        gateways.items.map(async (gw) => gatewayCard(gw, await api(`/meshes/${gw.mesh}/meshgateways/${gw.name}/listeners`, {}, signal), overviews)),
      );
      return h("div", {}, h("h2", {}, "Gateways"), cards.length ? cards : h("p", { class: "muted" }, "no MeshGateway"));
    },
  });

  // -- routes -----------------------------------------------------------------------------------------------

  // A backend's destination: its service, then its other tags in order (a proto map keeps none).
  function destination(tags) {
    const rest = Object.entries(tags).filter(([k]) => k !== "kuma.io/service").sort();
    return [tags["kuma.io/service"] || "*", ...rest.map(([k, v]) => `${k}=${v}`)].join(" ");
  }

  function ruleText(rule) {
    const matches = (rule.matches || []).map((m) => (m.path ? `${m.path.match || "PREFIX"} ${m.path.value}` : JSON.stringify(m))).join(", ");
    const backends = (rule.backends || []).map((b) => `${destination(b.destination || {})} (weight ${b.weight ?? 1})`).join(", ");
    return `${matches || "*"} → ${backends}`;
  }

  MG.page("routes", {
    title: "Routes",
    roles: BOTH,
    poll: 2000,
    async render(params, signal) {
      const body = await api("/meshgatewayroutes", { size: 1000 }, signal);
      const rows = body.items.map((r) => {
        const conf = r.conf.http || r.conf.tcp || {};
        return {
          attrs: { "data-route": `${r.mesh}/${r.name}` },
          cells: [
            yamlLink(`${r.mesh}/${r.name}`, `/meshes/${r.mesh}/meshgatewayroutes/${r.name}`),
            { node: (r.selectors || []).map((s) => h("div", {}, tags(s.match))) },
            r.conf.http ? "HTTP" : "TCP",
            (conf.hostnames || []).join(", "),
            { node: (conf.rules || []).map((rule) => h("div", {}, ruleText(rule))) },
            ago(r.modificationTime),
          ],
        };
      });
      return h("div", {}, h("h2", {}, "Gateway routes"), table(["route", "selectors", "type", "hostnames", "rules", "modified"], rows, "no MeshGatewayRoute"));
    },
  });

  // -- data planes by zone ----------------------------------------------------------------------------------

  MG.page("dataplanes", {
    title: "Data planes",
    roles: BOTH,
    poll: 1000,
    async render(params, signal) {
      const body = await api("/dataplanes/_overview", { size: 1000 }, signal);
      const byZone = new Map();
      for (const d of body.items) {
        const zone = d.zone || (d.labels && d.labels["kuma.io/zone"]) || "(this zone)";
        if (!byZone.has(zone)) byZone.set(zone, []);
        byZone.get(zone).push(d);
      }
      const sections = [...byZone.entries()].sort().map(([zone, dps]) =>
        h(
          "div",
          { class: "card", "data-dp-zone": zone },
          h("h3", {}, zone),
          table(
            ["dataplane", "mesh", "type", "address", "tags", "state"],
            dps.map((d) => {
              const net = d.dataplane.networking;
              const state = dataplaneState(d);
              const type = net.gateway ? `gateway (${net.gateway.type || "DELEGATED"})` : net.ingress ? "ingress" : "sidecar";
              const tagSets = net.gateway ? [net.gateway.tags] : (net.inbound || []).map((i) => i.tags);
              return {
                class: state.includes("offline") ? "offline" : "",
                attrs: { "data-dataplane": `${d.mesh}/${d.name}` },
                cells: [
                  yamlLink((d.labels && d.labels["kuma.io/display-name"]) || d.name, `/meshes/${d.mesh}/dataplanes/${d.name}`),
                  d.mesh,
                  type,
                  net.address,
                  { node: tagSets.map((t) => h("div", {}, tags(t))) },
                  { text: state, class: `status ${state === "online" || state === "zone online" ? "online" : ""}`, attrs: { "data-state": state } },
                ],
              };
            }),
          ),
        ),
      );
      return h("div", {}, h("h2", {}, `Data planes (${body.items.length})`), sections.length ? sections : h("p", { class: "muted" }, "no Dataplane"));
    },
  });

  // -- .mesh names with their VIPs per zone -----------------------------------------------------------------

  MG.page("names", {
    title: ".mesh names",
    roles: BOTH,
    poll: 2000,
    async render(params, signal) {
      const body = await api("/vips", {}, signal);
      const rows = body.items.map((v) => ({
        attrs: { "data-name": v.name, "data-zone": v.zone || "" },
        cells: [
          link(v.name, "trace", { name: v.name }),
          v.zone || "(this zone)",
          v.mesh,
          v.vip,
          (v.ports || []).join(", "),
          (v.source || []).join(", "),
        ],
      }));
      const zones = (body.zones || []).filter((z) => z.error).map((z) => h("div", { class: "warning" }, `${z.zone} (${z.status}): VIPs unknown: ${z.error}`));
      return h(
        "div",
        {},
        h("h2", {}, ".mesh names and their VIPs"),
        zones,
        (body.problems || []).map((p) => h("div", { class: "warning" }, p)),
        table(["name", "zone", "mesh", "VIP", "ports", "from"], rows, "no .mesh name"),
      );
    },
  });

  // -- kds trace: one resource, or one .mesh name, across zones ---------------------------------------------

  function traceView(t) {
    const rows = (t.zones || []).map((r) => {
      const down = t.direction !== "zone-to-global";
      const sent = r.sent ? `${ago(r.sent.at)}, nonce ${r.sent.nonce}${r.inFlight ? " (in flight)" : ""}` : "-";
      return {
        class: r.verdict === "rejected" || r.verdict === "offline" ? "bad" : "",
        attrs: { "data-zone": r.zone, "data-verdict": r.verdict },
        cells: [
          r.zone,
          r.status,
          down ? sent : r.globalName || "-",
          String(r.zoneVersion || "-").slice(0, 12),
          { text: r.verdict, class: `verdict-${r.verdict.replace(" ", "-")}` },
          { text: r.verdict !== "in sync" || r.relayed ? r.reason || "" : r.reason || "", class: r.verdict === "rejected" ? "nack-reason" : "" },
        ],
      };
    });
    const where = t.mesh ? ` in mesh "${t.mesh}"` : "";
    return h(
      "div",
      { class: "card" },
      h("h3", {}, `${t.kind} "${t.name}"${where} (KDS name ${t.wireName}), ${t.direction}`),
      t.direction !== "zone-to-global" ? h("div", {}, `Global version: ${t.globalVersion || "none (deleted, or never created)"}`) : null,
      table(["zone", "status", t.direction === "zone-to-global" ? "on global" : "sent", "zone version", "result", "reason"], rows, "no zones"),
    );
  }

  function nameTraceView(t) {
    const rows = (t.zones || []).map((r) => ({
      class: r.verdict === "rejected" || r.verdict === "offline" || r.verdict === "absent" ? "bad" : "",
      attrs: { "data-zone": r.zone, "data-verdict": r.verdict },
      cells: [
        r.zone,
        r.status,
        { text: r.verdict, class: `verdict-${r.verdict.replace(" ", "-")}` },
        r.vip || (r.vipError ? `unknown: ${r.vipError}` : "-"),
        r.reason,
      ],
    }));
    return h(
      "div",
      { class: "card" },
      h("h3", {}, `${t.name}: made by`),
      (t.sources || []).map((s) => h("div", {}, `${s.kind} ${s.name} in mesh ${s.mesh} (${s.detail}; from ${s.zone ? "zone " + s.zone : "the global"}; port ${s.port})`)),
      table(["zone", "status", "result", "VIP", "reason"], rows, "no zones"),
    );
  }

  MG.page("trace", {
    title: "Trace",
    roles: ["global"],
    async mount(root, params, signal) {
      const resources = (await api("/_resources", {}, signal)).resources.filter((r) => r.includeInFederation);
      const kind = h(
        "select",
        { name: "kind" },
        h("option", { value: "name" }, ".mesh name"),
        resources.map((r) => h("option", { value: r.name }, r.name)),
      );
      kind.value = params.name && !params.kind ? "name" : params.kind || "MeshGateway";
      const name = h("input", { name: "name", value: params.name || "", placeholder: "edge-gateway, or echo.default.svc.80.mesh" });
      const mesh = h("input", { name: "mesh", value: params.mesh || "default" });
      const out = h("div", { id: "trace-result" });
      const form = h(
        "form",
        { class: "query" },
        h("label", {}, "kind", kind),
        h("label", {}, "name", name),
        h("label", {}, "mesh", mesh),
        h("button", { type: "submit" }, "Trace"),
      );
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const p = kind.value === "name" ? { name: name.value.trim() } : { kind: kind.value, name: name.value.trim(), mesh: mesh.value.trim() };
        location.hash = MG.href("trace", p);
      });
      root.append(h("h2", {}, "Trace across zones (kds trace)"), form, out);
      if (!params.name) return;
      // Live: the verdicts move as zones ACK, NACK or drop; asked again every 2 s while the page is open.
      while (!signal.aborted) {
        try {
          const t = params.kind
            ? await api("/kds/trace", { kind: params.kind, name: params.name, mesh: params.mesh }, signal)
            : await api("/kds/trace/name", { name: params.name }, signal);
          out.replaceChildren(params.kind ? traceView(t) : nameTraceView(t));
          MG.clearProblem();
        } catch (err) {
          if (err.name === "AbortError") return;
          out.replaceChildren(h("div", { class: "problem" }, err.message));
        }
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    },
  });

  // -- kds watch: live events -------------------------------------------------------------------------------

  const MAX_EVENTS = 300;

  function eventRow(e) {
    if (e.event === "dropped") return { cells: ["", "", "", "dropped", "", "", { text: `${e.count} events dropped: this view fell behind`, class: "wrap" }] };
    const items = [...(e.upserts || []).map((u) => `+${u.name}@${String(u.version).slice(0, 8)}`), ...(e.removals || []).map((n) => `-${n}`)];
    const more = e.more ? ` (+${e.more} more)` : "";
    const rejected = (e.rejected || []).map((r) => `${r.name} (${r.reason})`);
    const detail = rejected.length ? `rejected: ${rejected.join(" ")}` : e.error ? `error: ${e.error}` : items.slice(0, 5).join(" ") + (items.length > 5 || more ? ` (+${items.length - 5 + (e.more || 0)} more)` : "");
    const bad = rejected.length || e.event === "nack" || e.error;
    return {
      class: bad ? "nack" : "",
      attrs: { "data-event": e.event, "data-seq": e.seq },
      cells: [
        String(e.at || "").slice(11, 23),
        e.zone,
        e.direction,
        e.event,
        e.kind || "",
        e.nonce || "",
        { text: `${detail}${e.latencyMs !== undefined ? `  ${e.latencyMs}ms` : ""}`, class: `wrap ${bad ? "nack-reason" : ""}` },
      ],
    };
  }

  MG.page("watch", {
    title: "KDS watch",
    roles: ["global"],
    async mount(root, params, signal) {
      const zone = h("input", { name: "zone", value: params.zone || "", placeholder: "every zone" });
      const kind = h("input", { name: "kind", value: params.kind || "", placeholder: "every kind" });
      const form = h("form", { class: "query" }, h("label", {}, "zone", zone), h("label", {}, "kind", kind), h("button", { type: "submit" }, "Watch"));
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        location.hash = MG.href("watch", { zone: zone.value.trim(), kind: kind.value.trim() });
      });
      const state = h("div", { class: "muted", id: "watch-state" }, "connecting…");
      const tbody = h("tbody", {});
      const events = h(
        "table",
        { class: "events" },
        h("thead", {}, h("tr", {}, ["time", "zone", "direction", "event", "kind", "nonce", "detail"].map((c) => h("th", {}, c)))),
        tbody,
      );
      root.append(h("h2", {}, "KDS watch (live)"), form, state, events);
      // Newest first; the recent history is replayed first (since=0), then events arrive as they happen.
      await MG.stream("/kds/watch", { zone: params.zone, kind: params.kind, since: 0 }, signal, (e) => {
        if (e.event === "heartbeat") return;
        state.textContent = `watching ${params.zone || "every zone"}, ${params.kind || "every kind"}`;
        const spec = eventRow(e);
        tbody.prepend(h("tr", { class: spec.class, ...spec.attrs }, spec.cells.map((c) => (typeof c === "object" ? h("td", { class: c.class }, c.text) : h("td", {}, c)))));
        while (tbody.childElementCount > MAX_EVENTS) tbody.lastElementChild.remove();
      }).then(() => {
        state.textContent = "the control plane closed the watch";
      });
    },
  });

  // -- a resource as `meshgatectl get -o yaml` prints it ----------------------------------------------------

  MG.page("yaml", {
    title: "YAML",
    roles: BOTH,
    async mount(root, params, signal) {
      const resources = (await api("/_resources", {}, signal)).resources;
      const kind = h("select", { name: "kind" }, resources.map((r) => h("option", { value: r.path }, r.name)));
      kind.value = params.kind || "meshgateways";
      const form = h("form", { class: "query" }, h("label", {}, "kind", kind), h("button", { type: "submit" }, "List"));
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        location.hash = MG.href("yaml", { kind: kind.value });
      });
      root.append(h("h2", {}, "Resources"), form);
      if (params.path) {
        const text = await MG.apiText(params.path, {}, signal);
        root.append(h("h3", {}, params.path), h("pre", { class: "yaml", id: "yaml" }, MG.yamlOfJson(text)));
        return;
      }
      const list = await api(`/${kind.value}`, { size: 1000 }, signal);
      const meshScoped = resources.find((r) => r.path === kind.value).scope === "Mesh";
      root.append(
        table(
          ["name", "mesh", "modified"],
          list.items.map((r) => [yamlLink(r.name, meshScoped ? `/meshes/${r.mesh}/${kind.value}/${r.name}` : `/${kind.value}/${r.name}`), r.mesh || "", ago(r.modificationTime)]),
          "none",
        ),
      );
    },
  });

  MG.start();
})();

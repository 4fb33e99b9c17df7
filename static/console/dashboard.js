// The Dashboard live: snapshots and errors over /ws/dashboard/, polling while the socket is down.
// Numbers are formatted as console/dashboard.py formats them for the first render.
(function () {
  "use strict";

  const root = document.getElementById("dashboard");
  if (!root) return;

  const POLL_MS = 3000;
  const RETRY_MS = 2000;
  const MAX_ERRORS = 50;
  const state = { span: "hour", data: null, charts: {}, socket: null, pollTimer: null };

  // --- figures

  function display(key, value) {
    if (key === "errors_by_stage") {
      const parts = Object.keys(value || {}).sort().map((stage) => stage + " " + value[stage]);
      return parts.length ? parts.join(" · ") : "—";
    }
    if (value === null || value === undefined) return "—";
    if (key === "error_rate") return (value * 100).toFixed(1) + " %";
    if (key.indexOf(".") >= 0) return value < 1000 ? value.toFixed(1) + " ms" : (value / 1000).toFixed(2) + " s";
    return String(value);
  }

  function valueOf(window, key) {
    if (key.indexOf(".") >= 0) {
      const [metric, quantile] = key.split(".");
      return window.latency[metric][quantile];
    }
    return window[key];
  }

  function showFigures(data) {
    const windows = {};
    data.windows.forEach((w) => { windows[w.key] = w; });
    root.querySelectorAll("[data-window][data-figure]").forEach((cell) => {
      const window = windows[cell.dataset.window];
      if (window) cell.textContent = display(cell.dataset.figure, valueOf(window, cell.dataset.figure));
    });
    root.querySelectorAll("[data-queue]").forEach((cell) => {
      const value = data.queue[cell.dataset.queue];
      cell.textContent = cell.dataset.queue === "oldest_s" ? Number(value).toFixed(1) : String(value);
    });
    const alertsOpen = document.getElementById("alerts-open");
    alertsOpen.classList.toggle("d-none", !data.alerts_open);
    alertsOpen.querySelector("[data-figure-alerts]").textContent = String(data.alerts_open);
    const updated = document.getElementById("updated-at");
    updated.setAttribute("datetime", data.generated_at);
    updated.textContent = data.generated_at.slice(11, 19);
  }

  // --- tables (built with DOM calls: names and reasons are text, never markup)

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    });
    (children || []).forEach((c) => node.appendChild(c));
    return node;
  }

  function num(value, suffix) {
    return el("td", { class: "text-end", text: value === null || value === undefined ? "—" : value + (suffix || "") });
  }

  function badge(kind, text) {
    return el("span", { class: "badge text-bg-" + kind, text: text });
  }

  function replaceRows(tableId, rows, columns, emptyText) {
    const body = document.querySelector("#" + tableId + " tbody");
    body.replaceChildren();
    if (!rows.length) {
      body.appendChild(el("tr", {}, [el("td", { colspan: String(columns), class: "text-body-secondary", text: emptyText })]));
    }
    rows.forEach((row) => body.appendChild(row));
  }

  const LISTENER_BADGES = { listening: "success", live: "success", error: "danger", "not running": "warning" };

  function listenerCell(c) {
    const listener = c.listener;
    const cell = el("td", { "data-listener": String(c.id) }, [badge(LISTENER_BADGES[listener.state] || "secondary", listener.state)]);
    if (listener.state === "listening") {
      cell.append(" ", el("span", { class: "small text-body-secondary text-nowrap", text: listener.connections + " conn." }));
    }
    if (listener.error) {
      cell.appendChild(el("div", { class: "small text-danger-emphasis error-clip text-truncate", title: listener.error, text: listener.error }));
    }
    return cell;
  }

  function showTables(data) {
    replaceRows("channel-table", data.channels.map((c) => {
      const name = el("td", {}, [el("a", { href: c.url, text: c.name })]);
      if (c.paused) name.append(" ", badge("warning", "paused"));
      return el("tr", {}, [name, listenerCell(c), num(c.received), num(c.errored), num(c.delivered), num(c.p95_ms, " ms"),
        num(c.unprocessed)]);
    }), 7, "No channel yet.");
    replaceRows("destination-table", data.destinations.map((d) => {
      const name = el("td", {}, [el("a", { href: d.url, text: d.name }), document.createTextNode(" "),
        el("span", { class: "small text-body-secondary", text: d.channel })]);
      const stateCell = el("td");
      if (d.paused) stateCell.appendChild(badge("warning", "paused"));
      if (d.breaker !== "closed") stateCell.appendChild(badge("danger", "breaker " + d.breaker));
      else if (!d.paused) stateCell.appendChild(badge("success", "sending"));
      return el("tr", {}, [name, stateCell, num(d.delivered), num(d.failed), num(d.retrying), num(d.p95_ms, " ms"),
        num(d.open), num(d.oldest_s, " s")]);
    }), 8, "No destination yet.");
  }

  // --- the error stream

  function errorRow(e) {
    const at = e.at.slice(0, 10) + " " + e.at.slice(11, 19);
    const channel = e.destination ? e.channel + " → " + e.destination : e.channel;
    return el("tr", { class: "fresh", "data-message": String(e.message_id) }, [
      el("td", { class: "text-nowrap" }, [el("time", { datetime: e.at, text: at })]),
      el("td", { text: channel }),
      el("td", { text: e.message_type || "—" }),
      el("td", {}, [badge("danger", e.stage || "?")]),
      el("td", { class: "small", text: e.path || "—" }),
      el("td", { class: "small error-clip text-truncate", title: e.reason, text: e.reason }),
      el("td", {}, [el("a", { href: e.url, text: "#" + e.message_id })]),
    ]);
  }

  function addErrors(errors) {
    const body = document.querySelector("#error-stream tbody");
    body.querySelectorAll("tr.empty").forEach((row) => row.remove());
    errors.forEach((e) => {
      const selector = 'tr[data-message="' + e.message_id + '"]';
      if (e.stage !== "deliver" && body.querySelector(selector)) return; // already listed
      body.insertBefore(errorRow(e), body.firstChild);
    });
    while (body.children.length > MAX_ERRORS) body.lastChild.remove();
  }

  function replaceErrors(errors) {
    const body = document.querySelector("#error-stream tbody");
    body.replaceChildren();
    if (!errors.length) {
      body.appendChild(el("tr", { class: "empty" }, [el("td", { colspan: "7", class: "text-body-secondary",
        text: "No errors. Each new one appears here as it happens." })]));
    }
    errors.slice().reverse().forEach((e) => addErrors([e]));
    body.querySelectorAll("tr.fresh").forEach((row) => row.classList.remove("fresh"));
  }

  // --- charts (uPlot)

  function chartWidth() {
    const box = document.getElementById("chart-throughput");
    return Math.max(280, box.clientWidth || 600);
  }

  const CHARTS = {
    throughput: { title: "Messages", series: [["received", "Received", "#0d6efd"], ["delivered", "Delivered", "#198754"]] },
    errors: { title: "Errors", series: [["errors", "Errors", "#dc3545"]] },
    latency: { title: "Latency, received → delivered (ms)", latency: true, series: [["p50", "p50", "#6c757d"], ["p95", "p95", "#fd7e14"], ["p99", "p99", "#dc3545"]] },
  };

  function columns(series, spec) {
    return [series.t].concat(spec.series.map(([key]) => series[key]));
  }

  function drawCharts(data) {
    if (typeof uPlot === "undefined") return;
    const series = data[state.span] || data.hour;
    Object.entries(CHARTS).forEach(([name, spec]) => {
      const chart = state.charts[name];
      if (chart && chart.span === state.span) {
        chart.plot.setData(columns(series, spec));
        return;
      }
      if (chart) chart.plot.destroy();
      const target = document.getElementById("chart-" + name);
      const per = state.span === "hour" ? " per minute" : " per 10 minutes";
      const options = {
        title: spec.title + (spec.latency ? "" : per),
        width: chartWidth(),
        height: 160,
        series: [{}].concat(spec.series.map(([, label, color]) => ({
          label: label, stroke: color, width: 1.5, spanGaps: !!spec.latency,
          points: { show: !!spec.latency, size: 4 },
        }))),
        axes: [{}, { size: 50 }],
      };
      state.charts[name] = { span: state.span, plot: new uPlot(options, columns(series, spec), target) };
    });
  }

  root.querySelectorAll("[data-span]").forEach((button) => {
    button.addEventListener("click", () => {
      root.querySelectorAll("[data-span]").forEach((b) => b.classList.toggle("active", b === button));
      state.span = button.dataset.span;
      if (state.data) drawCharts(state.data);
    });
  });

  window.addEventListener("resize", () => {
    Object.values(state.charts).forEach((c) => c.plot.setSize({ width: chartWidth(), height: 160 }));
  });

  // --- applying a snapshot

  function apply(data) {
    state.data = data;
    showFigures(data);
    showTables(data);
    drawCharts(data);
    if (data.errors) replaceErrors(data.errors);
  }

  // --- live, and the fallback

  function setLive(live) {
    const badgeEl = document.getElementById("live-state");
    badgeEl.replaceChildren();
    const icon = el("i", { class: live ? "bi bi-broadcast" : "bi bi-wifi-off" });
    badgeEl.append(icon, live ? " live" : " polling");
    badgeEl.className = "badge " + (live ? "text-bg-success" : "text-bg-warning");
    badgeEl.dataset.live = live ? "yes" : "no";
    document.getElementById("live-fallback").classList.toggle("d-none", live);
    if (live) stopPolling();
    else startPolling();
  }

  function poll() {
    const url = new URL(root.dataset.poll, window.location.href);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))))
      .then(apply)
      .catch(() => {});
  }

  function startPolling() {
    if (state.pollTimer) return;
    poll();
    state.pollTimer = window.setInterval(poll, POLL_MS);
  }

  function stopPolling() {
    if (state.pollTimer) window.clearInterval(state.pollTimer);
    state.pollTimer = null;
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + root.dataset.socket);
    state.socket = socket;
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "snapshot") apply(message.data);
      else if (message.type === "errors") addErrors(message.errors);
    });
    socket.addEventListener("open", () => setLive(true));
    socket.addEventListener("close", () => {
      if (state.socket !== socket) return;
      setLive(false);
      window.setTimeout(connect, RETRY_MS);
    });
  }

  connect(); // its first message is a full snapshot, charts included
})();

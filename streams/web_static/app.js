// Forewarn's page: the reps' queue, the alert stream and the overview, fed live by /api/events.
// Everything is built with textContent, never from HTML strings, so no text from an event can run.
"use strict";

const PRIORITY_RANK = { P1: 0, P2: 1, P3: 2, P4: 3 };
const ACTIVE = ["open", "claimed"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  let body = null;
  try { body = await response.json(); } catch (e) { body = { error: response.statusText }; }
  return { status: response.status, body };
}

function utc(iso) {
  if (!iso) return "-";
  return iso.replace("T", " ").replace(/:\d\d(\.\d+)?Z$/, " UTC");
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

function plural(n, word) { return `${n} ${n === 1 ? word : word + "s"}`; }

// Many events in a burst make one redraw, at most every 200 ms.
function throttled(draw) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    setTimeout(() => { pending = false; draw(); }, 200);
  };
}

let ME = { name: null, accounts: false, queues: [], rules: [] };

async function whoAmI() {
  const { body } = await api("/api/me");
  ME = body;
  const who = document.getElementById("who");
  who.replaceChildren();
  if (ME.name) {
    const form = el("form", { method: "post", action: "/logout", style: "display:inline" },
      el("button", { type: "submit", id: "sign-out" }, "sign out"));
    who.append(el("span", { id: "signed-in-as" }, `signed in as ${ME.name} · `), form);
  } else if (ME.accounts) {
    who.append(el("a", { href: "/login", id: "sign-in-link" }, "sign in to act"));
  } else {
    who.append("read-only: no accounts (FOREWARN_WEB_ACCOUNTS)");
  }
  const page = document.body.dataset.page;
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("here", link.dataset.nav === page);
  }
}

// The stream says hello on every (re)connection; the page then fetches its state again, so nothing
// that changed between its fetch and the stream, or while it was disconnected, stays missing.
function live(handlers) {
  const source = new EventSource("/api/events");
  const line = document.getElementById("status-line");
  source.addEventListener("hello", () => { if (handlers.connected) handlers.connected(); });
  source.addEventListener("task", (e) => handlers.task && handlers.task(JSON.parse(e.data)));
  source.addEventListener("alert", (e) => handlers.alert && handlers.alert(JSON.parse(e.data)));
  source.onerror = () => { line.textContent = "Connection to the server lost; reconnecting…"; };
  return source;
}

// ------------------------------------------------------------------ tasks

function tasksPage() {
  const cases = new Map();
  let queue = "all";
  try { queue = decodeURIComponent(location.hash.slice(1)) || "all"; } catch (e) { queue = "all"; }
  let chosen = null;
  let answer = null; // { ok, text, task_id }

  function sorted() {
    return [...cases.values()]
      .filter((t) => ACTIVE.includes(t.status) && (queue === "all" || t.queue === queue))
      .sort((a, b) => (PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority])
        || a.due_by.localeCompare(b.due_by) || a.task_id.localeCompare(b.task_id));
  }

  function openProblems(task) {
    const listed = (task.view && task.view.problems) || [];
    return listed.filter((p) => p.status === "open").length;
  }

  function renderTabs() {
    const active = [...cases.values()].filter((t) => ACTIVE.includes(t.status));
    const tabs = document.getElementById("queue-tabs");
    tabs.replaceChildren();
    for (const name of ["all", ...ME.queues]) {
      const n = name === "all" ? active.length : active.filter((t) => t.queue === name).length;
      tabs.append(el("button", { class: name === queue ? "here" : "", "data-queue": name,
        onclick: () => { queue = name; location.hash = name; render(); } }, `${name} (${n})`));
    }
  }

  function renderList() {
    const body = document.querySelector("#cases tbody");
    body.replaceChildren();
    const now = Date.now();
    for (const task of sorted()) {
      const overdue = Date.parse(task.due_by) < now;
      const extra = openProblems(task) > 1 ? ` +${openProblems(task) - 1}` : "";
      const name = (task.view.customer && task.view.customer.name) || task.customer_id;
      body.append(el("tr", { class: "case-row" + (task.task_id === chosen ? " here" : ""), "data-task": task.task_id,
        onclick: () => { chosen = task.task_id; answer = null; render(); } },
        el("td", {}, task.task_id),
        el("td", { class: `prio ${task.priority}` }, task.priority),
        el("td", {}, task.status + (task.assignee ? ` by ${task.assignee}` : "")),
        el("td", {}, utc(task.due_by), overdue ? el("span", { class: "overdue" }, " OVERDUE") : null),
        el("td", {}, task.rule + extra),
        el("td", {}, name)));
    }
    const line = document.getElementById("status-line");
    line.textContent = `${plural(sorted().length, "case")} ${queue === "all" ? "in every queue" : "in " + queue}, ` +
      "most urgent first; updates arrive by themselves.";
  }

  function problemBlock(problem, number, total) {
    const box = el("div", { class: "problem " + problem.status, "data-alert": problem.alert_id },
      el("div", {}, el("strong", {}, `Problem ${number} of ${total}: ${problem.rule}`),
        ` (${problem.severity || "-"}, ${problem.status}${problem.resolution ? ", " + problem.resolution.replaceAll("_", " ") : ""}; ` +
        `${problem.priority} ${problem.queue}, due ${utc(problem.due_by)})`),
      problem.title ? el("div", {}, problem.title) : null,
      problem.summary ? el("div", { class: "muted" }, problem.summary) : null,
      el("div", { class: "do" }, "Do: ", problem.action));
    const lines = problem.order_lines || [];
    if (lines.length) {
      box.append(el("h3", {}, `Order ${problem.order_id || ""}: the short lines`));
      const table = el("table", {}, el("tr", {}, el("th", {}, "item"), el("th", {}, "short"), el("th", {}, "in stock"),
        el("th", {}, "offer instead")));
      for (const line of lines) {
        table.append(el("tr", {},
          el("td", {}, `${line.name || line.sku} (${line.sku})`),
          el("td", {}, `${line.short} of ${plural(Number(line.ordered || 0), "unit")}`),
          el("td", {}, String(line.available || 0)),
          el("td", {}, (line.alternatives || []).map((alt) => el("div", { class: "alt" },
            `${alt.name} (${alt.sku}), ${(alt.price_cents / 100).toFixed(2)}, ${alt.available} in stock`)))));
      }
      box.append(table);
    }
    const tickets = problem.earlier_tickets || [];
    if (tickets.length) {
      box.append(el("h3", {}, "Tickets, oldest first"));
      for (const ticket of tickets) {
        box.append(el("div", { class: "ticket" },
          el("strong", {}, ticket.ticket_id), ` (${ticket.channel}, ${utc(ticket.opened_at)}` +
          `${ticket.order_id ? ", order " + ticket.order_id : ""}, ${ticket.resolved ? "resolved" : "open"}): `,
          el("span", { lang: "und" }, ticket.text || ticket.category || "(no text)")));
      }
    }
    const lost = problem.cart_lost_items || {};
    if (Object.keys(lost).length) {
      const pages = problem.evidence.last_pages || problem.evidence.last_page || "a page";
      box.append(el("h3", {}, `Cart lost after ${pages}`));
      const named = problem.evidence.cart_lost_products;
      for (const item of named ? named.split(", ") : Object.entries(lost).map(([sku, qty]) => `${sku} x${qty}`)) {
        box.append(el("div", {}, item));
      }
    }
    const hidden = new Set(["last_page", "last_pages", "cart_lost_products", "lost_skus", "resolution"]);
    const rest = Object.entries(problem.evidence || {}).filter(([k]) => !hidden.has(k) && !k.startsWith("short."));
    if (rest.length) {
      box.append(el("h3", {}, "Evidence"));
      box.append(el("table", {}, rest.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, String(v))))));
    }
    return box;
  }

  function renderPanel() {
    const panel = document.getElementById("panel");
    const scrolled = panel.scrollTop;
    drawPanel(panel);
    panel.scrollTop = scrolled; // a redraw keeps the rep's place
  }

  function drawPanel(panel) {
    const task = chosen && cases.get(chosen);
    if (!task) {
      panel.replaceChildren(el("p", { class: "muted" }, "Choose a case to see everything needed to act on it."));
      return;
    }
    // The worker decides who may act; the page only offers what the case's status allows, and shows
    // the worker's answer (a rep finishing a case someone else holds sees the rejection's reason).
    const can = {
      claim: ME.name && task.status === "open",
      release: ME.name && task.status === "claimed",
      done: ME.name && task.status === "claimed",
    };
    const customer = task.view.customer || {};
    const facts = [customer.tier && customer.tier !== "unknown" ? `${customer.tier} tier` : null,
      customer.lifetime_value ? `lifetime value ${customer.lifetime_value}` : null,
      customer.language ? `speaks ${customer.language}` : null,
      customer.preferred_channel ? `prefers ${customer.preferred_channel}` : null].filter(Boolean);
    const problems = task.view.problems || [];
    panel.replaceChildren(el("div", { "data-task": task.task_id },
      el("h2", { id: "panel-title" }, `${task.task_id} · case ${task.case_number || 1}`),
      el("div", { class: "muted" }, `${task.priority} ${task.queue} · ${task.status}` +
        `${task.assignee ? " by " + task.assignee : ""} · due ${utc(task.due_by)}`),
      el("p", { class: "action", id: "panel-action" }, task.action),
      el("div", { class: "buttons" },
        ["claim", "release", "done"].map((action) => el("button", { id: `act-${action}`, disabled: !can[action],
          onclick: () => act(task.task_id, action) }, action))),
      ME.name ? null : el("div", { class: "muted", id: "sign-in-hint" },
        ME.accounts ? "Sign in to claim, release or finish a case." : "No accounts are configured: read-only."),
      answer && answer.task_id === task.task_id
        ? el("div", { class: "answer " + (answer.ok ? "ok" : "no"), id: "answer" }, answer.text) : null,
      el("h3", {}, "Customer"),
      el("div", { id: "panel-customer" }, `${customer.name || task.customer_id} (${task.customer_id})` +
        facts.map((f) => ", " + f).join("")),
      el("div", {}, `phone ${customer.phone || "not known"}; e-mail ${customer.email || "not known"}`),
      el("h3", {}, `${plural(problems.length, "problem")}, ${problems.filter((p) => p.status === "open").length} open`),
      problems.map((p, i) => problemBlock(p, i + 1, problems.length))));
  }

  async function act(taskId, action) {
    answer = { ok: true, text: `${action}: waiting for the worker's answer…`, task_id: taskId };
    renderPanel();
    let status, body;
    try {
      ({ status, body } = await api(`/api/tasks/${encodeURIComponent(taskId)}/${action}`,
        { method: "POST", headers: { "X-Forewarn": "1" } }));
    } catch (e) {
      answer = { ok: false, text: `${action}: the server could not be reached; try again`, task_id: taskId };
      render();
      return;
    }
    if (status === 200 && body.applied) {
      keep(body.task);
      const words = { claim: "claimed", release: "released", done: "done" };
      answer = { ok: true, text: `${taskId} ${words[action]} by ${ME.name}.`, task_id: taskId };
      if (!ACTIVE.includes(body.task.status)) chosen = taskId;
    } else if (status === 409) {
      answer = { ok: false, text: `Rejected: ${body.reason}: ${body.message}`, task_id: taskId };
    } else {
      answer = { ok: false, text: body.error || `the server answered ${status}`, task_id: taskId };
    }
    render();
  }

  function render() { renderTabs(); renderList(); renderPanel(); }

  // The latest version of each case wins (timestamps compared as times, not as text); a case that
  // left the queue is forgotten unless its panel is open.
  function keep(task) {
    const known = cases.get(task.task_id);
    if (known && Date.parse(task.updated_at) < Date.parse(known.updated_at)) return;
    if (ACTIVE.includes(task.status) || task.task_id === chosen) cases.set(task.task_id, task);
    else cases.delete(task.task_id);
  }

  async function fetchAll() {
    const { status, body } = await api("/api/tasks");
    if (status !== 200) {
      document.getElementById("status-line").textContent = body.error || `the server answered ${status}`;
      return false;
    }
    for (const [id, task] of [...cases]) if (id !== chosen && ACTIVE.includes(task.status)) cases.delete(id);
    for (const task of body) keep(task);
    return true;
  }

  (async () => {
    await whoAmI();
    const later = throttled(render);
    let first = true;
    live({
      connected: async function again() {
        if (!(await fetchAll())) { setTimeout(again, 2000); return; } // not ready yet: ask again
        if (first) {
          const fromLink = new URLSearchParams(location.search).get("task");
          if (fromLink && cases.has(fromLink)) chosen = fromLink;
          first = false;
        }
        render();
      },
      task: (task) => { keep(task); later(); },
    });
    setInterval(renderList, 30000); // overdue marks move with the clock
  })();
}

// ------------------------------------------------------------------ alerts

function alertsPage() {
  const alerts = new Map();
  const expanded = new Set();
  const changed = new Set();
  const filters = { audience: "", rule: "", severity: "", status: "" };

  function matches(a) {
    return (!filters.audience || a.audience === filters.audience) && (!filters.rule || a.rule === filters.rule)
      && (!filters.severity || a.severity === filters.severity)
      && (!filters.status || a.status === filters.status || (filters.status === "open" && a.status === "updated"));
  }

  // Which alerts a roll-up sums up: the same test as the server's (streams/web.py, ROLLUPS).
  const ROLLUPS = {
    sku_stockout_impact: (m, r) => m.rule === "out_of_stock_open_order" && !!r.sku && (m.sku === r.sku
      || String((m.details || {}).short_skus || "").split(",").includes(r.sku)),
    cart_loss_spike: (m, r) => m.rule === "cart_lost" && m.page === r.page,
  };

  let candidates = null; // the alerts a roll-up could sum up, gathered once per redraw

  function membersOf(rollup) {
    const belongs = ROLLUPS[rollup.rule];
    if (!belongs) return null;
    if (candidates === null) {
      candidates = [...alerts.values()].filter((m) => m.rule === "out_of_stock_open_order" || m.rule === "cart_lost");
    }
    return candidates.filter((m) => belongs(m, rollup)).map((m) => m.alert_id).sort();
  }

  function row(alert, member) {
    const tr = el("tr", { id: `alert-${alert.alert_id}`, "data-alert": alert.alert_id, "data-status": alert.status,
      class: (member ? "members " : "") + (changed.has(alert.alert_id) ? "flash" : "") },
      el("td", {}, utc(alert.detected_at)),
      el("td", {}, alert.rule),
      el("td", {}, el("span", { class: "badge " + alert.severity }, alert.severity)),
      el("td", {}, el("span", { class: "badge " + alert.status }, alert.status)),
      el("td", {}, alert.audience),
      el("td", {}, alert.title, el("div", { class: "muted" }, alert.summary)));
    const members = member ? null : membersOf(alert);
    if (members) {
      const open = expanded.has(alert.alert_id);
      tr.lastChild.append(el("button", { class: "expand", "data-expand": alert.alert_id,
        onclick: () => { open ? expanded.delete(alert.alert_id) : expanded.add(alert.alert_id); render(); } },
        `${open ? "▾ hide" : "▸ show"} ${plural(members.length, "alert")} it sums up`));
    }
    return tr;
  }

  function fillOptions(id, values) {
    const select = document.getElementById(id);
    const current = select.value;
    const known = new Set([...select.options].map((o) => o.value));
    for (const value of values) if (!known.has(value)) select.append(el("option", { value }, value));
    select.value = current;
  }

  function render() {
    candidates = null;
    fillOptions("f-audience", [...new Set([...alerts.values()].map((a) => a.audience))].sort());
    fillOptions("f-rule", ME.rules || []);
    const body = document.querySelector("#alerts tbody");
    body.replaceChildren();
    const shown = [...alerts.values()].filter(matches)
      .sort((a, b) => b.detected_at.localeCompare(a.detected_at) || b.alert_id.localeCompare(a.alert_id));
    for (const alert of shown) {
      body.append(row(alert, false));
      if (expanded.has(alert.alert_id)) {
        for (const id of membersOf(alert) || []) body.append(row(alerts.get(id), true));
      }
    }
    changed.clear();
    const open = shown.filter((a) => a.status !== "resolved").length;
    document.getElementById("status-line").textContent =
      `${plural(shown.length, "alert")} shown, ${open} open; new and changed ones appear by themselves.`;
  }

  for (const name of Object.keys(filters)) {
    const select = document.getElementById(`f-${name}`);
    select.value = new URLSearchParams(location.search).get(name) || "";
    filters[name] = select.value;
    select.addEventListener("change", () => { filters[name] = select.value; render(); });
  }

  (async () => {
    await whoAmI();
    const later = throttled(render);
    live({
      connected: async function again() {
        const { status, body } = await api("/api/alerts");
        if (status !== 200) {
          document.getElementById("status-line").textContent = body.error || `the server answered ${status}`;
          setTimeout(again, 2000); // not ready yet: ask again
          return;
        }
        for (const alert of body) alerts.set(alert.alert_id, alert);
        render();
      },
      alert: (alert) => {
        alerts.set(alert.alert_id, alert);
        changed.add(alert.alert_id);
        later();
      },
    });
  })();
}

// ------------------------------------------------------------------ overview

function barChart(rows, label, value) {
  // Horizontal bars in a 420-unit-wide drawing that scales to its card.
  const width = 420, labels = 170, bar = 16;
  const max = Math.max(1, ...rows.map(value));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const height = rows.length * (bar + 4) + 4;
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", "100%");
  rows.forEach((r, i) => {
    const rect = document.createElementNS(svg.namespaceURI, "rect");
    const w = Math.max(1, (width - labels - 40) * value(r) / max);
    rect.setAttribute("x", labels); rect.setAttribute("y", i * (bar + 4) + 2);
    rect.setAttribute("width", w); rect.setAttribute("height", bar); rect.setAttribute("fill", "#2f6f9f");
    const name = document.createElementNS(svg.namespaceURI, "text");
    name.setAttribute("x", 0); name.setAttribute("y", i * (bar + 4) + 14);
    name.textContent = String(label(r)).slice(0, 28);
    const number = document.createElementNS(svg.namespaceURI, "text");
    number.setAttribute("x", labels + w + 4); number.setAttribute("y", i * (bar + 4) + 14);
    number.textContent = String(value(r));
    svg.append(rect, name, number);
  });
  return svg;
}

function overviewPage() {
  function card(title, big, detail, id) {
    return el("div", { class: "card", id }, el("h2", {}, title), el("div", { class: "big" }, big),
      detail ? el("div", { class: "muted" }, detail) : null);
  }

  function chartCard(title, chart, draw) {
    const box = el("div", { class: "card", "data-chart": title }, el("h2", {}, title));
    if (chart.error) box.append(el("div", { class: "muted" }, chart.error));
    else if (!chart.rows.length) box.append(el("div", { class: "muted" }, "no data yet"));
    else box.append(draw(chart));
    return box;
  }

  function render(o) {
    const stack = o.stack;
    const cases = Object.values(o.cases_per_queue).reduce((n, q) => n + q.open + q.claimed, 0);
    const alerts = Object.values(o.open_alerts_per_rule).reduce((n, v) => n + v, 0);
    document.getElementById("status-line").textContent = stack.healthy
      ? "The stack is healthy." : `Needs attention: ${stack.problems.join("; ")}`;
    const behind = stack.workers.map((w) => w.clock_behind_s).filter((v) => v !== null);
    document.getElementById("cards").replaceChildren(
      card("open cases", String(cases), "one per customer", "card-cases"),
      card("open alerts", String(alerts), null, "card-alerts"),
      card("dead letters", String(stack.dead_letters), "workers and sink", "card-dead"),
      card("worker clock behind wall time", behind.length ? `${Math.max(...behind)} s` : "-",
        plural(stack.workers.length, "worker"), "card-clock"));
    const queues = document.querySelector("#queues tbody");
    queues.replaceChildren(...Object.entries(o.cases_per_queue).map(([q, n]) => el("tr", { "data-queue": q },
      el("td", {}, el("a", { href: `/tasks#${q}` }, q)), el("td", {}, String(n.open)), el("td", {}, String(n.claimed)),
      el("td", {}, ago(n.oldest_age_s)))));
    const rules = document.querySelector("#rules tbody");
    rules.replaceChildren(...Object.entries(o.open_alerts_per_rule).map(([r, n]) => el("tr", { "data-rule": r },
      el("td", {}, el("a", { href: `/alerts?rule=${encodeURIComponent(r)}&status=open` }, r)), el("td", {}, String(n)))));
    document.querySelector("#workers tbody").replaceChildren(...stack.workers.map((w) => el("tr", {},
      el("td", {}, w.name), el("td", {}, w.clock_behind_s === null ? "-" : `${w.clock_behind_s} s`),
      el("td", {}, String(w.partitions)), el("td", {}, String(w.partitions_behind)), el("td", {}, String(w.dead_letters)),
      el("td", {}, `${w.reported_s_ago} s ago`))));
    const lag = [];
    for (const group of [stack.worker_group, stack.sink_group]) {
      if (!group) continue;
      const per = group.lag_per_topic;
      const total = per ? Object.values(per).reduce((n, v) => n + v, 0) : null;
      const behind = per ? Object.entries(per).filter(([, n]) => n > 0).map(([t, n]) => `${t} ${n}`).join(", ") : "";
      lag.push(el("tr", { "data-group": group.group }, el("td", {}, group.group),
        el("td", { class: "lag-total" }, total === null ? "unknown" : String(total)), el("td", {}, behind || "-")));
    }
    document.querySelector("#lag tbody").replaceChildren(...lag);
    const c = o.charts;
    document.getElementById("charts").replaceChildren(
      chartCard("events per minute per input topic (last 30 minutes of data)", c.events_per_minute, (chart) => {
        const per = {};
        for (const [topic, , events] of chart.rows) per[topic] = (per[topic] || 0) + events;
        const rows = Object.entries(per).map(([topic, n]) => [topic, Math.round(n / 30 * 10) / 10]);
        return barChart(rows, (r) => r[0], (r) => r[1]);
      }),
      chartCard("complaints per category (last 24 hours of data)", c.complaints_per_category_hour, (chart) => {
        const per = {};
        for (const [, category, tickets] of chart.rows) per[category] = (per[category] || 0) + tickets;
        return barChart(Object.entries(per), (r) => r[0], (r) => r[1]);
      }),
      chartCard("first reply p50 / p90 seconds per channel (latest day)", c.first_reply_by_channel, (chart) =>
        el("table", {}, el("tr", {}, el("th", {}, "channel"), el("th", {}, "tickets"), el("th", {}, "p50 s"),
          el("th", {}, "p90 s")), chart.rows.map((r) => el("tr", {}, el("td", {}, r[0]), el("td", {}, String(r[1])),
          el("td", {}, r[3] === null ? "-" : String(Math.round(r[3]))), el("td", {}, r[4] === null ? "-" : String(Math.round(r[4]))))))),
      chartCard("proactive share per rule", c.proactive_share, (chart) =>
        barChart(chart.rows, (r) => r[0], (r) => r[3])));
  }

  async function refresh() {
    const { status, body } = await api("/api/overview");
    if (status === 200) render(body);
    else document.getElementById("status-line").textContent = body.error || `the server answered ${status}`;
  }

  (async () => {
    await whoAmI();
    await refresh();
    setInterval(refresh, 5000);
  })();
}

function loginPage() {
  whoAmI();
  if (new URLSearchParams(location.search).get("failed")) document.getElementById("failed").hidden = false;
}

const PAGES = { tasks: tasksPage, alerts: alertsPage, overview: overviewPage, login: loginPage };
PAGES[document.body.dataset.page]();

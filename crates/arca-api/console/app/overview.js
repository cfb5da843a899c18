// The overview: pool capacity per device and metadata, the last pool and catalog checks, jobs
// running now, and what needs attention (volumes without a recent complete backup, failed
// jobs).

import { ago, duration, get, post, when } from "./api.js";
import { act, badge, card, el, field, notify, progress, size, table, update } from "./ui.js";
import { refreshNow } from "./main.js";

const THRESHOLD_KEY = "arca-attention-hours";

function usageRow(label, used, capacity, id) {
  return el(
    "div",
    { class: "bar-row", id },
    el("span", {}, label),
    el("meter", { min: 0, max: capacity || 1, value: used, "aria-label": `${label} use`, high: capacity * 0.85 }),
    el("span", { class: "muted" }, size(used), " of ", size(capacity)),
  );
}

function poolCard(pool) {
  const pct = pool.capacity ? ((pool.used / pool.capacity) * 100).toFixed(1) : "0.0";
  return card(
    "Pool",
    el(
      "p",
      { id: "pool-summary" },
      "Used ",
      el("strong", { id: "pool-used" }, size(pool.used)),
      " of ",
      el("strong", { id: "pool-capacity" }, size(pool.capacity)),
      ` (${pct}%), free `,
      el("span", { id: "pool-free" }, size(pool.free)),
      ` · ${pool.volumes} volumes, ${pool.snapshots} snapshots`,
    ),
    usageRow("Data", pool.used, pool.capacity, "pool-bar"),
    pool.devices.map((d) => usageRow(`Device ${d.index}`, d.used, d.capacity, `device-${d.index}`)),
    el("p", { class: "muted" }, pool.devices.map((d) => `device ${d.index}: ${d.path}`).join(" · ")),
    usageRow("Metadata", pool.metadata_used, pool.metadata_capacity, "metadata-bar"),
    el(
      "p",
      { class: pool.metadata_available ? "muted" : "error" },
      "Metadata room left for new volumes, snapshots and backups: ",
      size(pool.metadata_available),
    ),
  );
}

/** What a recorded check (GET /v1/checks) found. */
function outcome(c) {
  if (c.outcome === "clean") return el("span", { class: "ok" }, "clean");
  if (c.outcome === "failed") return el("span", { class: "error" }, `could not finish: ${c.error || "no reason given"}`);
  return el("span", { class: "error" }, `${c.problems} problem(s): `,
    c.first_problems.slice(0, 3).map((p) => p.message).join("; "));
}

function took(c) {
  return c.duration_ms < 1000 ? `${c.duration_ms} ms` : duration(c.duration_ms / 1000);
}

/** The last check of a kind: result, when, how long, by whom. */
function lastCheck(c, never) {
  if (!c) return el("span", { class: "muted" }, never);
  return [outcome(c), ` · ${when(c.finished)} · took ${took(c)} · by ${c.by}`];
}

/**
 * The recent checks of both kinds, newest first, into `history` (a <details> made once, so
 * that polling keeps it open or closed as the person left it).
 */
function fillHistory(history, checks) {
  const recent = [...checks.pool, ...checks.catalog].sort((a, b) => b.finished.localeCompare(a.finished));
  history.hidden = recent.length < 2;
  update(history.lastChild, recent, () => table(null, [
    { label: "Check", cell: (c) => c.kind },
    { label: "Finished", cell: (c) => when(c.finished) },
    { label: "Result", cell: outcome },
    { label: "Took", num: true, cell: took },
    { label: "By", cell: (c) => c.by },
  ], recent));
}

function checksCard(checks, jobs, history, onCatalog, onPool) {
  const running = jobs.find((j) => j.kind === "pool-check" && j.state === "running");
  fillHistory(history, checks);
  return card(
    "Checks",
    el(
      "p",
      { id: "pool-check" },
      "Pool: ",
      lastCheck(checks.pool[0], "never checked"),
      running ? [" · now ", badge(running.state), " ", progress(running)] : null,
    ),
    el("p", { id: "catalog-check" }, "Catalog: ", lastCheck(checks.catalog[0], "never checked")),
    history,
    el(
      "div",
      { class: "row" },
      el("button", { type: "button", class: "secondary", onclick: onPool }, "Check pool"),
      el("button", { type: "button", class: "secondary", onclick: onCatalog }, "Check catalog"),
    ),
  );
}

function jobsCard(jobs) {
  const running = jobs.filter((j) => j.state === "running");
  return card(
    "Running now",
    table(
      null,
      [
        { label: "Job", cell: (j) => `${j.id}` },
        { label: "Kind", cell: (j) => j.kind },
        { label: "Target", cell: (j) => j.target },
        { label: "Progress", cell: (j) => progress(j) },
      ],
      running,
      "No job is running.",
    ),
  );
}

function attentionCard(newest, jobs, hours, now) {
  const limitMs = hours * 3600 * 1000;
  const stale = newest.filter(
    (n) => !n.holds_backup && (n.backup == null || now - new Date(n.point_in_time).getTime() > limitMs),
  );
  const failed = jobs.filter((j) => j.state === "failed");
  return el(
    "div",
    { id: "attention-list" },
    table(
      `Volumes without a complete backup in the last ${hours} h`,
      [
        { label: "Volume", cell: (n) => el("a", { href: `#/volumes/${encodeURIComponent(n.volume)}` }, n.volume) },
        {
          label: "Newest complete backup",
          cell: (n) => (n.backup != null ? `${when(n.point_in_time)} (${ago(n.point_in_time, now)})` : el("span", { class: "warn" }, "none")),
        },
      ],
      stale,
      `Every volume has a complete backup from the last ${hours} h.`,
    ),
    failed.length
      ? table("Failed jobs", [
        { label: "Job", cell: (j) => `${j.id} ${j.kind}` },
        { label: "Target", cell: (j) => j.target },
        { label: "Error", cell: (j) => el("span", { class: "error" }, j.error || "") },
        { label: "Finished", cell: (j) => when(j.finished) },
      ], failed)
      : null,
  );
}

export function mount(view) {
  let hours = Number(localStorage.getItem(THRESHOLD_KEY)) || 24;
  const live = el("div", { class: "grid" });
  const attention = el("div");
  const history = el("details", { id: "check-history", hidden: true }, el("summary", {}, "Recent checks"), el("div"));
  const threshold = field("Needs a backup when the newest is older than (hours)", {
    type: "number", min: 1, value: hours, name: "hours",
    onchange: (ev) => {
      hours = Math.max(1, Number(ev.target.value) || 24);
      localStorage.setItem(THRESHOLD_KEY, String(hours));
      refreshNow();
    },
  });
  const checkCatalog = () => act(async () => {
    notify("Checking the catalog…");
    const report = await get("/v1/catalog/check");
    notify(report.clean ? "Catalog is clean" : `Catalog has ${report.problems.length} problem(s)`);
    await refreshNow();
  });
  const checkPool = () => act(async () => {
    const job = await post("/v1/pool/check");
    notify(`Pool check started (job ${job.id})`);
    await refreshNow();
  });
  view.append(
    el("h1", {}, "Overview"),
    live,
    card("Needs attention", threshold, attention),
  );
  return {
    async refresh() {
      const [pool, jobs, newest, checks] = await Promise.all([
        get("/v1/pool"), get("/v1/jobs"), get("/v1/newest-backups"), get("/v1/checks"),
      ]);
      live.replaceChildren(poolCard(pool), checksCard(checks, jobs, history, checkCatalog, checkPool), jobsCard(jobs));
      attention.replaceChildren(attentionCard(newest, jobs, hours, Date.now()));
    },
  };
}

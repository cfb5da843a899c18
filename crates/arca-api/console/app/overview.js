// The overview: pool capacity per device and metadata, the last pool and catalog checks, jobs
// running now, and what needs attention (volumes without a recent complete backup, failed
// jobs).

import { ago, get, post, when } from "./api.js";
import { act, badge, card, el, field, notify, progress, size, table } from "./ui.js";
import { refreshNow } from "./main.js";

const THRESHOLD_KEY = "arca-attention-hours";
const CATALOG_KEY = "arca-last-catalog-check";

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

function checkResult(report) {
  if (!report) return el("span", { class: "muted" }, "no result");
  if (report.clean) return el("span", { class: "ok" }, "clean");
  return el("span", { class: "error" }, `${report.problems.length} problem(s): `,
    report.problems.slice(0, 3).map((p) => p.message).join("; "));
}

function checksCard(jobs, onCatalog, onPool) {
  const poolChecks = jobs.filter((j) => j.kind === "pool-check");
  const last = poolChecks.reduce((a, j) => (!a || j.id > a.id ? j : a), null);
  let catalog = null;
  try {
    catalog = JSON.parse(sessionStorage.getItem(CATALOG_KEY));
  } catch {
    catalog = null;
  }
  return card(
    "Checks",
    el(
      "p",
      { id: "pool-check" },
      "Pool: ",
      last
        ? [badge(last.state), " ", when(last.finished || last.created), " ",
          last.state === "running" ? progress(last) : checkResult(last.result),
          last.error ? el("span", { class: "error" }, ` ${last.error}`) : null]
        : el("span", { class: "muted" }, "not checked since the daemon started"),
    ),
    el(
      "p",
      { id: "catalog-check" },
      "Catalog: ",
      catalog
        ? [when(catalog.at), " ", checkResult(catalog.report), ` (${catalog.report.records} records)`]
        : el("span", { class: "muted" }, "not checked from this console yet"),
    ),
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
    sessionStorage.setItem(CATALOG_KEY, JSON.stringify({ at: new Date().toISOString(), report }));
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
      const [pool, jobs, newest] = await Promise.all([
        get("/v1/pool"), get("/v1/jobs"), get("/v1/newest-backups"),
      ]);
      live.replaceChildren(poolCard(pool), checksCard(jobs, checkCatalog, checkPool), jobsCard(jobs));
      attention.replaceChildren(attentionCard(newest, jobs, hours, Date.now()));
    },
  };
}

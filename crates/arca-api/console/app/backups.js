// Backups: the timeline of a volume's backups (or of all of them) with the filters of `backup
// list`, paged through the API (never everything at once), and the "back up now" form.

import { get, post, query, when } from "./api.js";
import { badge, card, el, field, form, notify, size, table, update } from "./ui.js";
import { refreshNow } from "./main.js";

const PAGE = 50;

/** Held, locked, keep-until: the retention as badges. */
export function retentionBadges(r) {
  return [
    r.hold ? badge("held") : null,
    r.lock_until ? badge(`locked until ${r.lock_until.slice(0, 10)}`, "locked") : null,
    r.keep_until ? el("span", { class: "muted" }, `keep until ${r.keep_until.slice(0, 10)}`) : null,
  ];
}

/** Where the backup lives: the array (its image), each vault copy, each host copy. */
export function place(b) {
  if (b.status !== "complete") return "—";
  const d = b.destination;
  const image = d.kind === "snapshot" ? `${d.volume}@${d.snapshot}` : `volume ${d.volume}`;
  const where = (b.locations || ["array"]).map((l) => {
    if (l === "array") return `array: ${image}`;
    const [k, ...rest] = l.split(":");
    return `${k}: ${rest.join(":")}`;
  });
  return where.length ? where.join("; ") : "nowhere";
}

function verified(b) {
  if (b.verified == null) return el("span", { class: "muted" }, "never");
  return b.verified ? el("span", { class: "ok" }, "good") : el("span", { class: "error" }, "damaged");
}

/** The strip: one dot per backup of the page, placed by point in time. */
function strip(backups) {
  if (!backups.length) return el("div");
  const times = backups.map((b) => new Date(b.point_in_time).getTime());
  const lo = Math.min(...times);
  const hi = Math.max(...times);
  const span = Math.max(hi - lo, 1);
  let lastX = -100;
  let lane = 0;
  const dots = backups.slice().reverse().map((b) => {
    const x = backups.length === 1 ? 50 : 2 + ((new Date(b.point_in_time).getTime() - lo) / span) * 96;
    lane = x - lastX < 1.5 ? (lane + 1) % 3 : 0;
    lastX = x;
    const status = b.verified === false ? "verified-bad" : b.status;
    const a = el("a", {
      href: `#/backups/${b.id}`,
      class: `${status} lane${lane}`,
      title: `${when(b.point_in_time)} · ${b.info.label || "no label"} · ${b.status}`,
      "aria-label": `Backup ${b.id} at ${when(b.point_in_time)}, ${b.info.label || "no label"}, ${b.status}`,
    });
    a.style.left = `${x}%`;
    return a;
  });
  return el(
    "div",
    {},
    el("div", { class: "timeline", role: "group", "aria-label": "Backups in time" }, dots),
    el("div", { class: "axis" }, el("span", {}, when(new Date(lo).toISOString())), el("span", {}, when(new Date(hi).toISOString()))),
  );
}

function backupTable(backups, showVolume) {
  return table(
    null,
    [
      { label: "Point in time", cell: (b) => el("a", { href: `#/backups/${b.id}` }, when(b.point_in_time)) },
      showVolume ? { label: "Volume", cell: (b) => b.source.volume_name } : null,
      { label: "Gen", num: true, cell: (b) => `${b.generation}` },
      { label: "Method", cell: (b) => b.method },
      { label: "Label", cell: (b) => b.info.label || "—" },
      { label: "Status", cell: (b) => [badge(b.status), b.job ? el("span", { class: "muted" }, ` job ${b.job}`) : null] },
      { label: "Verified", cell: verified },
      { label: "Retention", cell: (b) => retentionBadges(b.retention) },
      { label: "Where", cell: place },
      { label: "Allocated", num: true, cell: (b) => size(b.allocated_bytes) },
    ].filter(Boolean),
    backups,
    "No backups match.",
  );
}

function filterForm(volume, fixed, apply) {
  const status = field("Status", { name: "status" }, "select",
    ["", "complete", "copying", "failed", "consumed", "deleted"].map((s) => el("option", { value: s }, s || "any")));
  return form(
    { "aria-label": "Filter backups", class: "row filters" },
    async (d) => apply(d),
    volume ? null : field("Volume", { name: "volume" }),
    field("Label", { name: "label" }),
    field("Host", { name: "host" }),
    field("App", { name: "app" }),
    field("Meta (KEY=VALUE, comma-separated)", { name: "meta" }),
    field("Since", { name: "since", type: "date" }),
    field("Until", { name: "until", type: "date" }),
    status,
    fixed.in_vault ? null : field("In vault", { name: "in_vault" }),
    field("Not in vault", { name: "not_in_vault" }),
    el("div", {}, el("button", { type: "submit", class: "secondary" }, "Filter")),
  );
}

/**
 * A volume's timeline (or every volume's, `volume` null), `fixed` filters always applied (a
 * vault's page: `{in_vault}`): `{node, refresh}`.
 */
export function timeline(volume, fixed = {}, title = volume ? "Backups" : null) {
  let filters = {};
  const before = [null]; // stack of page starts: the last is the page shown
  const slot = el("div", { id: "timeline" });
  const pager = el("div", { class: "pager" });
  const node = card(
    title,
    filterForm(volume, fixed, (d) => {
      filters = d;
      before.splice(1);
      return refresh();
    }),
    slot,
    pager,
  );
  async function refresh() {
    const meta = (filters.meta || "").split(",").map((m) => m.trim()).filter(Boolean);
    const until = filters.until ? `${filters.until}T23:59:59Z` : "";
    const page = await get(`/v1/backups${query({ ...filters, ...fixed, meta, until, volume: volume || filters.volume, limit: PAGE, before: before[before.length - 1] })}`);
    update(slot, page.backups, () => el("div", {}, strip(page.backups), backupTable(page.backups, !volume)));
    update(pager, [page.next_before, before.length], () => el(
      "div", { class: "pager" },
      el("button", { type: "button", class: "secondary", disabled: before.length < 2, onclick: () => { before.pop(); refresh(); } }, "Newer"),
      `Page ${before.length}`,
      el("button", { type: "button", class: "secondary", disabled: page.next_before == null, onclick: () => { before.push(page.next_before); refresh(); } }, "Older"),
    ));
  }
  return { node, refresh };
}

/** Back up now, with the host information fields. */
export function backUpForm(volume) {
  return form(
    { id: "backup-now", "aria-label": "Back up now" },
    async (d, f) => {
      const body = { volumes: [volume] };
      if (d.method) body.method = d.method;
      if (d.to) body.to = d.to;
      for (const k of ["label", "program", "host", "app", "content_id", "description", "keep_for"]) if (d[k]) body[k] = d[k];
      if (d.hold) body.hold = true;
      const r = await post("/v1/backups", body);
      const b = r.backups[0];
      notify(`Backup ${b.id} of ${volume} taken${r.jobs.length ? ` (job ${r.jobs.join(", ")} running)` : ""}`);
      f.reset();
      await refreshNow();
    },
    field("Label", { name: "label" }),
    field("Method", { name: "method" }, "select",
      el("option", { value: "" }, "default (snapshot; copy with a destination)"),
      el("option", { value: "snapshot" }, "snapshot"), el("option", { value: "copy" }, "copy")),
    field("Copy to volume (optional)", { name: "to" }),
    field("Program", { name: "program" }),
    field("Host", { name: "host" }),
    field("Application", { name: "app" }),
    field("Content id", { name: "content_id" }),
    field("Description", { name: "description" }),
    field("Keep for (e.g. 30d)", { name: "keep_for" }),
    el("div", {}, el("label", { for: "backup-hold" }, "Hold"), el("input", { type: "checkbox", name: "hold", id: "backup-hold", value: "1" })),
    el("div", {}, el("button", { type: "submit" }, "Back up now")),
  );
}

/** `#/backups`: every volume's backups with the same filters. */
export function mount(view) {
  const line = timeline(null);
  view.append(el("h1", {}, "Backups"), line.node);
  return { refresh: () => line.refresh() };
}

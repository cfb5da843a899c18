// One backup: its whole record and history, and its actions: verify, restore as a new volume,
// restore in place (confirmed: an undo point is taken, connected hosts are disconnected),
// hold / release, retention, delete. Jobs it starts are followed live.

import { bytes, del, get, post, seg, when } from "./api.js";
import { act, badge, card, confirmAction, el, field, form, notify, progress, size, table, update, uriBox } from "./ui.js";
import { refreshNow } from "./main.js";
import { place, retentionBadges } from "./backups.js";
import { annotateForm, hostCopyForm, whereItLives } from "./copies.js";

function info(i) {
  const meta = Object.entries(i.meta || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  return [
    ["Label", i.label], ["Program", i.program], ["Host", i.host], ["Application", i.application],
    ["Content id", i.content_id], ["Description", i.description], ["Meta", meta],
  ];
}

function record(b) {
  const d = b.destination;
  const rows = [
    ["Id", `${b.id}`],
    ["Volume", el("a", { href: `#/volumes/${encodeURIComponent(b.source.volume_name)}` }, b.source.volume_name)],
    ["Generation", `${b.generation}`],
    ["Method", b.method],
    ["Status", [badge(b.status), b.status_reason ? ` ${b.status_reason}` : ""]],
    ["Point in time", [when(b.point_in_time), b.clock_stepped_back ? el("span", { class: "warn" }, ` (clock stepped back; previous ${when(b.previous_point_in_time)})`) : null]],
    ["Started", when(b.started)],
    ["Completed", when(b.completed)],
    ["Verified", b.verified == null ? "never" : b.verified ? el("span", { class: "ok" }, "good") : el("span", { class: "error" }, "damaged")],
    ["Retention", [retentionBadges(b.retention), b.retention.hold || b.retention.lock_until || b.retention.keep_until ? null : "none"]],
    ["Where", place(b)],
    ["Destination", `${d.kind} ${d.volume}${d.snapshot ? `@${d.snapshot}` : ""}${d.device != null ? ` on device ${d.device}` : ""}`],
    ["Image", d.uri ? uriBox(d.uri, `NBD URI of backup ${b.id}`) : "—"],
    ["Size", size(b.logical_bytes)],
    ["Allocated", size(b.allocated_bytes)],
    ["Deleting it alone frees", b.unique_bytes == null ? "—" : size(b.unique_bytes)],
    ["Digest", b.digest ? `${b.digest.root.slice(0, 16)}… (${b.digest.extents} extents)` : "not yet"],
    ["Backup set", b.set_id == null ? "—" : `${b.set_id}`],
    ...info(b.info).map(([k, v]) => [k, v || "—"]),
  ];
  return el("dl", { class: "record", id: "backup-record" }, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function eventText(e) {
  switch (e.type) {
    case "verified": return e.ok ? "verified: good" : `verified: DAMAGED (${e.damaged_ranges} range(s))`;
    case "restored": return `restored ${e.in_place ? "in place into" : "as"} ${e.to}${e.from && e.from !== "array" ? ` from ${e.from}` : ""}`;
    case "copied_to_vault": return `copied to vault ${e.vault} (${e.manifest})`;
    case "host_copy_recorded": return `host copy recorded: ${e.medium}${e.location ? ` at ${e.location}` : ""}`;
    case "annotated": return `annotated: ${e.what}`;
    case "imported": return `imported from vault ${e.vault}`;
    case "vault_copy_forgotten": return `copy in vault ${e.vault} forgotten (vault removed)`;
    case "copied": return `copied to ${e.to}`;
    case "consumed": return `consumed by ${e.by}`;
    case "retention": return `retention: ${e.what}`;
    case "restore_resumed": return `restore into ${e.to} resumed`;
    case "restore_rolled_back": return `restore into ${e.to} rolled back to undo point ${e.undo_backup}: ${e.reason}`;
    case "restore_failed": return `restore as ${e.to} failed: ${e.reason}`;
    default: return JSON.stringify(e);
  }
}

function jobLine(j) {
  const result = j.state === "running" ? progress(j)
    : j.error ? el("span", { class: "error" }, j.error) : el("span", { class: "muted" }, when(j.finished));
  return el("p", { class: "job-line", "data-job": j.id, "data-kind": j.kind, "data-state": j.state }, `Job ${j.id} (${j.kind} ${j.target}): `, badge(j.state), " ", result);
}

function actions(id, b, follow, go) {
  const volume = b.source.volume_name;
  const restoreNew = form({ "aria-label": "Restore as a new volume" }, async (d) => {
    const r = await post(`/v1/backups/${id}/restore`, { as: d.name });
    notify(`Restoring backup ${id} as ${d.name}${r.job ? ` (job ${r.job})` : ""}`);
    if (r.job) follow(r.job);
    await refreshNow();
  }, field("New volume name", { name: "name", required: true }), el("div", {}, el("button", { type: "submit" }, "Restore as new")));

  const inPlace = el("button", {
    type: "button", class: "danger",
    onclick: () => act(async () => {
      const exp = (await get("/v1/exports")).find((e) => e.name === volume);
      const hosts = exp ? exp.connected : [];
      const ok = await confirmAction(`Restore ${volume} in place from backup ${id}?`, [
        `The current content of ${volume} is replaced by its content at ${when(b.point_in_time)}.`,
        `An undo point is taken first: a snapshot backup of ${volume} labelled pre-restore.`,
        hosts.length ? `These connected hosts will be disconnected: ${hosts.join(", ")}.` : `No host is connected to ${volume} now; any that connects before the restore starts is disconnected.`,
      ], "Restore in place");
      if (!ok) return;
      const r = await post(`/v1/backups/${id}/restore`, { to: volume, force: true });
      notify(`Restoring ${volume} in place; undo point ${r.undo_backups.join(", ")}`);
      if (r.job) follow(r.job);
      await refreshNow();
    }),
  }, "Restore in place…");

  const simple = (label, fn, cls = "secondary") => el("button", { type: "button", class: cls, onclick: () => act(fn) }, label);
  const retention = form({ "aria-label": "Retention" }, async (d) => {
    const body = {};
    if (d.keep_for) body.keep_for = d.keep_for;
    if (d.lock_until) body.lock_until = d.lock_until;
    await post(`/v1/backups/${id}/retention`, body);
    notify(`Retention of backup ${id} set`);
    await refreshNow();
  }, field("Keep for (e.g. 30d)", { name: "keep_for" }), field("Lock until (only extends)", { name: "lock_until", type: "date" }),
  el("div", {}, el("button", { type: "submit", class: "secondary" }, "Set retention")));

  const remove = simple("Delete backup…", async () => {
    const ok = await confirmAction(`Delete backup ${id} of ${volume}?`, [
      `Its image (${place(b)}, ${bytes(b.allocated_bytes)} allocated) is deleted; ${b.unique_bytes == null ? "" : `${bytes(b.unique_bytes)} freed; `}the record stays as history.`,
      `Content of ${volume} at ${when(b.point_in_time)}${b.info.label ? ` (label ${b.info.label})` : ""} can no longer be restored from it.`,
    ], "Delete backup");
    if (!ok) return;
    await del(`/v1/backups/${id}`);
    notify(`Deleted backup ${id}`);
    await refreshNow();
  }, "danger");

  return el("div", {},
    el("div", { class: "row" },
      simple("Verify", async () => {
        const r = await post("/v1/backups/verify", { ids: [Number(id)] });
        notify(`Verifying backup ${id} (job ${r.job})`);
        follow(r.job);
        await refreshNow();
      }),
      b.retention.hold
        ? simple("Release hold", async () => { await post(`/v1/backups/${id}/release`); notify(`Released backup ${id}`); await refreshNow(); })
        : simple("Hold", async () => { await post(`/v1/backups/${id}/hold`); notify(`Holding backup ${id}`); await refreshNow(); }),
      inPlace, remove),
    restoreNew, retention);
}

export function mount(view, id) {
  const head = el("div");
  const hist = el("div");
  const where = el("div");
  const info = el("div");
  const acts = el("div");
  const jobsSlot = el("div", { id: "backup-jobs", "aria-live": "polite" });
  const followed = new Set();
  const follow = (job) => followed.add(job);
  view.append(
    el("p", {}, el("a", { href: "#/backups" }, "← Backups")),
    el("h1", {}, `Backup ${id}`),
    el("div", { class: "grid" }, card("Record", head), card("Actions", acts, jobsSlot)),
    el("div", { class: "grid" }, card("Where it lives", where), card("Host information and copies", info)),
    card("History", hist),
  );
  return {
    async refresh() {
      const b = await get(`/v1/backups/${seg(id)}`);
      if (b.job != null) followed.add(b.job);
      const jobs = await Promise.all([...followed].map((j) => get(`/v1/jobs/${j}`)));
      update(head, b, () => record(b));
      update(acts, [b.retention, b.status, b.source], () => actions(id, b, follow, null));
      update(where, [b.locations, b.off_array_since, b.vault_copies, b.host_copies, b.destination], () => whereItLives(b));
      update(info, [b.info, b.status], () => el("div", {},
        el("h3", {}, "Annotate"), annotateForm(id, b),
        b.status === "complete" ? [el("h3", {}, "Record a host copy"), hostCopyForm(id)] : null));
      update(jobsSlot, jobs, () => el("div", {}, jobs.map(jobLine)));
      update(hist, b.history, () => table(null, [
        { label: "When", cell: (h) => when(h.at) },
        { label: "Event", cell: (h) => eventText(h.event) },
      ], b.history.slice().reverse(), "No events yet."));
    },
  };
}

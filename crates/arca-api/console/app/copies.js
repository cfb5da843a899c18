// A backup's places beyond the array (vault copies, copies its host recorded) and the forms
// by which a host's information is written after the fact: annotate and record a host copy.

import { post, when } from "./api.js";
import { badge, el, field, form, notify, size, table } from "./ui.js";
import { refreshNow } from "./main.js";

/** Where the backup lives: the array, each vault copy, each host copy. */
export function whereItLives(b) {
  const d = b.destination;
  const onArray = (b.locations || []).includes("array");
  return el("div", { id: "backup-where" },
    el("p", {}, onArray
      ? [badge("array", "complete"), ` ${d.kind === "snapshot" ? `${d.volume}@${d.snapshot}` : `volume ${d.volume}`}`]
      : [badge("not on the array", "deleted"), b.off_array_since ? ` since ${when(b.off_array_since)}` : ""]),
    el("h3", {}, "Vault copies"),
    table(null, [
      { label: "Vault", cell: (c) => el("a", { href: `#/vaults/${encodeURIComponent(c.vault)}` }, c.vault) },
      { label: "Copied", cell: (c) => when(c.copied) },
      { label: "Read", num: true, cell: (c) => size(c.bytes_read) },
      { label: "New", num: true, cell: (c) => size(c.bytes_new) },
      { label: "Stored", num: true, cell: (c) => size(c.bytes_stored) },
      { label: "Manifest", cell: (c) => el("code", {}, c.manifest) },
    ], b.vault_copies || [], "No vault copy."),
    el("h3", {}, "Host copies"),
    table(null, [
      { label: "Medium", cell: (c) => c.medium },
      { label: "Location", cell: (c) => c.location || "—" },
      { label: "By", cell: (c) => c.by || "—" },
      { label: "Copied", cell: (c) => when(c.copied) },
    ], b.host_copies || [], "No host copy recorded."));
}

/** "a=1, b=2" into an object; refuses a pair without "=". */
function pairs(text) {
  const out = {};
  for (const p of (text || "").split(",").map((x) => x.trim()).filter(Boolean)) {
    const i = p.indexOf("=");
    if (i < 1) throw new Error(`${JSON.stringify(p)} is not KEY=VALUE`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

/** Changes the label, description, content id and metadata the host supplied. */
export function annotateForm(id, b) {
  const i = b.info;
  return form({ id: "annotate", "aria-label": "Annotate the backup" }, async (d) => {
    const body = {};
    for (const k of ["label", "description", "content_id"]) if (d[k] && d[k] !== (i[k] || "")) body[k] = d[k];
    const meta = pairs(d.meta);
    if (Object.keys(meta).length) body.meta = meta;
    const unset = d.unset_meta.split(/[\s,]+/).filter(Boolean);
    if (unset.length) body.unset_meta = unset;
    if (!Object.keys(body).length) throw new Error("Nothing to change.");
    await post(`/v1/backups/${id}/annotate`, body);
    notify(`Annotated backup ${id}: ${Object.keys(body).join(", ")}`);
    await refreshNow();
  },
  field("Label", { name: "label", value: i.label || undefined }),
  field("Description", { name: "description", value: i.description || undefined }),
  field("Content id", { name: "content_id", value: i.content_id || undefined }),
  field("Set meta (KEY=VALUE, comma-separated)", { name: "meta" }),
  field("Remove meta keys", { name: "unset_meta" }),
  el("div", {}, el("button", { type: "submit", class: "secondary" }, "Annotate")));
}

/** Records a copy the host made itself (a tape, a disk...). */
export function hostCopyForm(id) {
  return form({ id: "host-copy", "aria-label": "Record a host copy" }, async (d, f) => {
    const body = { medium: d.medium };
    if (d.location) body.location = d.location;
    if (d.by) body.by = d.by;
    if (d.copied) body.copied = new Date(d.copied).toISOString();
    await post(`/v1/backups/${id}/host-copies`, body);
    notify(`Recorded a ${d.medium} copy of backup ${id}`);
    f.reset();
    await refreshNow();
  },
  field("Medium", { name: "medium", required: true, placeholder: "tape" }),
  field("Where (label, path)", { name: "location" }),
  field("Made by", { name: "by" }),
  field("Copied at (local time; default now)", { name: "copied", type: "datetime-local" }),
  el("div", {}, el("button", { type: "submit", class: "secondary" }, "Record copy")));
}

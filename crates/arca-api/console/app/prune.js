// Prune: a retention policy applied to a volume's complete backups. The dry run is shown as a
// table of what is kept and why, what is removed and the exact bytes freed; pruning for real
// asks first, naming every backup it removes.

import { bytes, post, seg, when } from "./api.js";
import { card, confirmAction, el, field, form, notify, size, table } from "./ui.js";
import { refreshNow } from "./main.js";

const RULES = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"];

function policy(d) {
  const body = {};
  if (d.label) body.label = d.label;
  for (const k of RULES) if (d[k] !== "" && d[k] !== undefined) body[k] = Number(d[k]);
  body.keep_newest_verified = Boolean(d.keep_newest_verified);
  return body;
}

export function report(r) {
  return el(
    "div",
    { id: "prune-report" },
    el("p", { id: "prune-summary" },
      r.dry_run ? "Dry run: " : "Pruned: ",
      `${r.kept} kept, ${r.removed} ${r.dry_run ? "would be removed" : "removed"}, `,
      "frees exactly ", el("strong", {}, size(r.freed_bytes)), ` (${r.freed_bytes} bytes).`),
    table(
      null,
      [
        { label: "Backup", cell: (i) => el("a", { href: `#/backups/${i.backup}` }, `${i.backup}`) },
        { label: "Point in time", cell: (i) => when(i.point_in_time) },
        { label: "Label", cell: (i) => i.label || "—" },
        { label: "Decision", cell: (i) => (i.keep ? el("span", { class: "ok" }, "keep") : el("span", { class: "error" }, "remove")) },
        { label: "Why kept", cell: (i) => i.reasons.join(", ") || "—" },
        { label: "Frees alone", num: true, cell: (i) => size(i.frees_alone_bytes) },
        { label: "Error", cell: (i) => (i.error ? el("span", { class: "error" }, i.error) : "") },
      ],
      r.items,
      "No complete backups to consider.",
      (i) => (i.keep ? "kept" : "removed"),
    ),
  );
}

export function pruneCard(volume) {
  const out = el("div");
  const f = form(
    { id: "prune", "aria-label": "Prune" },
    async (d, _f, submitter) => {
      const body = policy(d);
      const path = `/v1/volumes/${seg(volume)}/prune`;
      const dry = await post(path, { ...body, dry_run: true });
      out.replaceChildren(report(dry));
      if (!submitter || submitter.value !== "prune") return;
      const gone = dry.items.filter((i) => !i.keep);
      if (!gone.length) {
        notify("Nothing to prune: the policy keeps every backup");
        return;
      }
      const ok = await confirmAction(`Prune ${gone.length} backup(s) of ${volume}?`, [
        ...gone.map((i) => `Backup ${i.backup} at ${when(i.point_in_time)}${i.label ? ` (${i.label})` : ""} is deleted.`),
        `Frees ${bytes(dry.freed_bytes)} (${dry.freed_bytes} bytes).`,
      ], "Prune");
      if (!ok) return;
      const done = await post(path, body);
      out.replaceChildren(report(done));
      notify(`Pruned ${done.removed} backup(s) of ${volume}`);
      await refreshNow();
    },
    field("Label (only these)", { name: "label" }),
    RULES.map((k) => field(k.replace("_", " "), { name: k, type: "number", min: 0, inputmode: "numeric" })),
    el("div", {}, el("label", { for: "prune-verified" }, "Keep newest verified"),
      el("input", { type: "checkbox", name: "keep_newest_verified", id: "prune-verified", value: "1", checked: true })),
    el("div", { class: "buttons" },
      el("button", { type: "submit", class: "secondary", name: "action", value: "dry-run" }, "Dry run"),
      el("button", { type: "submit", class: "danger", name: "action", value: "prune" }, "Prune…")),
  );
  return card("Prune", f, out);
}

// Backup policies: the list with each policy's calendars, next slots and last result; a
// policy's page with its settings, next runs (in UTC and its time zone) and run history; create,
// update, pause, resume, run now and delete (pause, run and delete are confirmed first).

import { bytes, del, get, parseSize, post, api, seg, when } from "./api.js";
import { act, badge, card, confirmAction, el, field, form, notify, table, update } from "./ui.js";
import { refreshNow } from "./main.js";

const KEEP = ["last", "hourly", "daily", "weekly", "monthly", "yearly"];

/** "last 7, daily 14" or "nothing pruned". */
function keepText(k) {
  const rules = KEEP.filter((r) => k[r] != null).map((r) => `${r} ${k[r]}`);
  return rules.length ? rules.join(", ") : "no keep rules (prune removes nothing)";
}

function list(text) {
  return (text || "").split(/[\s,]+/).filter(Boolean);
}

/** "a=1, b=2" into an object; refuses a pair without "=". */
function metaOf(text) {
  const out = {};
  for (const pair of (text || "").split(",").map((p) => p.trim()).filter(Boolean)) {
    const i = pair.indexOf("=");
    if (i < 1) throw new Error(`${JSON.stringify(pair)} is not KEY=VALUE`);
    out[pair.slice(0, i)] = pair.slice(i + 1);
  }
  return out;
}

const metaText = (m) => Object.entries(m || {}).map(([k, v]) => `${k}=${v}`).join(", ");

function result(s) {
  if (!s.last_result) return el("span", { class: "muted" }, "never ran");
  return [badge(s.last_result), s.last_reason ? el("span", { class: "error" }, ` ${s.last_reason}`) : null];
}

/** The settings fields, filled from `p` when editing (sizes in exact bytes). */
function settingsFields(p, editing) {
  const v = (x) => (x == null ? undefined : String(x));
  const check = (name, label, on) => el("div", {},
    el("label", { for: `policy-${name}` }, label),
    el("input", { type: "checkbox", name, id: `policy-${name}`, value: "1", checked: on || undefined }));
  return [
    editing ? null : field("Name", { name: "name", required: true, pattern: "[A-Za-z0-9._\\-]{1,64}", autocomplete: "off" }),
    field("Volumes (patterns, space-separated)", { name: "volumes", required: true, value: p ? p.volumes.join(" ") : undefined, placeholder: "db-* web" }),
    field("Snapshot calendar", { name: "snapshot", value: p ? v(p.snapshot) : undefined, placeholder: "daily, *-*-* 02:00" }),
    field("Verify calendar", { name: "verify", value: p ? v(p.verify) : undefined, placeholder: "weekly" }),
    KEEP.map((r) => field(`Keep ${r}`, { name: `keep_${r}`, type: "number", min: 0, value: p ? v(p.keep[r]) : undefined, class: "narrow" })),
    field("Copy to vault", { name: "copy_to", value: p ? v(p.copy_to) : undefined, placeholder: "offsite" }),
    field("Copy calendar", { name: "copy", value: p ? v(p.copy) : undefined, placeholder: "daily" }),
    KEEP.map((r) => field(`Vault keep ${r}`, { name: `vault_keep_${r}`, type: "number", min: 0, value: p ? v(p.vault_keep[r]) : undefined, class: "narrow" })),
    field("Verify budget (e.g. 100G)", { name: "verify_budget", value: p ? v(p.verify_budget) : undefined }),
    field("Label (default: the name)", { name: "label", value: p ? p.label : undefined }),
    field("Meta (KEY=VALUE, comma-separated)", { name: "meta", value: p ? metaText(p.meta) : undefined }),
    field("Time zone", { name: "tz", value: p ? p.tz : undefined, placeholder: "UTC" }),
    check("set", "One backup set", p && p.set),
    editing ? null : check("paused", "Create paused", false),
  ];
}

/** The keep rules the form's fields `${prefix}${rule}` give. */
function keepOf(d, prefix = "keep_") {
  const keep = {};
  for (const r of KEEP) if (d[`${prefix}${r}`] !== undefined && d[`${prefix}${r}`] !== "") keep[r] = Number(d[`${prefix}${r}`]);
  return keep;
}

/** Whether the form's keep rules differ from the policy's `k`. */
function keepChanged(keep, k) {
  return JSON.stringify(keep) !== JSON.stringify(Object.fromEntries(KEEP.filter((r) => k[r] != null).map((r) => [r, k[r]])));
}

function createForm() {
  return form({ id: "create-policy", "aria-label": "Create a policy" }, async (d, f) => {
    const body = { name: d.name, volumes: list(d.volumes) };
    for (const k of ["snapshot", "verify", "label", "tz", "copy_to", "copy"]) if (d[k]) body[k] = d[k];
    const keep = keepOf(d);
    if (Object.keys(keep).length) body.keep = keep;
    const vaultKeep = keepOf(d, "vault_keep_");
    if (Object.keys(vaultKeep).length) body.vault_keep = vaultKeep;
    if (d.verify_budget) body.verify_budget = parseSize(d.verify_budget);
    if (d.meta) body.meta = metaOf(d.meta);
    if (d.set) body.set = true;
    if (d.paused) body.paused = true;
    const p = await post("/v1/policies", body);
    notify(`Created policy ${p.name}`);
    f.reset();
    await refreshNow();
  }, settingsFields(null, false), el("div", {}, el("button", { type: "submit" }, "Create policy")));
}

/** The PATCH body: only what differs from `p` (a cleared calendar is "none"). */
function changes(p, d) {
  const body = {};
  const volumes = list(d.volumes);
  if (volumes.join(" ") !== p.volumes.join(" ")) body.volumes = volumes;
  for (const k of ["snapshot", "verify", "copy_to", "copy"]) if ((d[k] || null) !== p[k]) body[k] = d[k] || "none";
  const keep = keepOf(d);
  if (keepChanged(keep, p.keep)) body.keep = keep;
  const vaultKeep = keepOf(d, "vault_keep_");
  if (keepChanged(vaultKeep, p.vault_keep)) body.vault_keep = vaultKeep;
  const budget = d.verify_budget ? parseSize(d.verify_budget) : 0;
  if (budget !== (p.verify_budget || 0)) body.verify_budget = budget;
  if (d.label && d.label !== p.label) body.label = d.label;
  if (d.tz && d.tz !== p.tz) body.tz = d.tz;
  const meta = metaOf(d.meta);
  if (JSON.stringify(meta) !== JSON.stringify(p.meta)) body.meta = meta;
  if (!!d.set !== p.set) body.set = !!d.set;
  return body;
}

function schedules(p) {
  return table(null, [
    { label: "Calendar", cell: (s) => [badge(s.track), ` ${s.calendar}`] },
    { label: "Steps", cell: (s) => s.steps.join(" → ") },
    { label: "Next", cell: (s) => (p.paused ? badge("paused") : when(s.next)) },
    { label: "Last run", cell: (s) => when(s.last_run) },
    { label: "Result", cell: result },
    { label: "Last success", cell: (s) => when(s.last_success) },
  ], p.schedules, "No calendar: it runs only when run by hand.");
}

/** `#/policies`. */
export const listPage = {
  mount(view) {
    const slot = el("div", { id: "policy-list" });
    view.append(el("h1", {}, "Policies"), card(null, slot), card("Create a policy", createForm()));
    return {
      async refresh() {
        const policies = await get("/v1/policies");
        update(slot, policies, () => table(null, [
          { label: "Policy", cell: (p) => el("a", { href: `#/policies/${seg(p.name)}` }, p.name) },
          { label: "Volumes", cell: (p) => `${p.volumes.join(" ")} (${p.matched_volumes.length} matched)` },
          { label: "Calendars", cell: (p) => p.schedules.map((s) => el("div", {}, badge(s.track), ` ${s.calendar}`)) },
          { label: "Next", cell: (p) => (p.paused ? badge("paused") : p.schedules.map((s) => el("div", {}, when(s.next)))) },
          { label: "Last", cell: (p) => p.schedules.map((s) => el("div", {}, result(s))) },
          { label: "Keep", cell: (p) => keepText(p.keep) },
          { label: "State", cell: (p) => (p.running ? badge("running") : p.paused ? badge("paused") : badge("active", "complete")) },
        ], policies, "No policies. A policy takes snapshot backups on a calendar, prunes and verifies them."));
      },
    };
  },
};

function runLine(r) {
  return [
    badge(r.result),
    r.reason ? el("span", { class: "error" }, ` ${r.reason}`) : null,
    r.steps.map((s) => el("div", { class: s.ok ? "" : "error" }, `${s.step}: ${s.summary}`)),
  ];
}

function actions(p, go) {
  const path = `/v1/policies/${seg(p.name)}`;
  const b = (label, cls, fn) => el("button", { type: "button", class: cls, onclick: () => act(fn) }, label);
  const volumes = p.matched_volumes.length ? p.matched_volumes.join(", ") : "no volume now";
  return el("div", { class: "row", id: "policy-actions" },
    b("Run now…", "", async () => {
      const steps = [...new Set(p.schedules.flatMap((s) => s.steps))];
      const ok = await confirmAction(`Run policy ${p.name} now?`, [
        `Steps: ${steps.length ? steps.join(", ") : "snapshot, prune"}; volumes: ${volumes}.`,
        steps.includes("prune") ? `Its prune removes the policy's own backups beyond ${keepText(p.keep)}.` : "Nothing is removed from the array.",
        ...(steps.includes("vault-prune") ? [`Its vault prune removes its copies in vault ${p.copy_to} beyond ${keepText(p.vault_keep)}.`] : []),
      ], "Run now", false);
      if (!ok) return;
      const r = await post(`${path}/run`, {});
      notify(`Running policy ${p.name} (job ${r.job})`);
      await refreshNow();
    }),
    p.paused
      ? b("Resume", "secondary", async () => {
        await post(`${path}/resume`);
        notify(`Resumed policy ${p.name}`);
        await refreshNow();
      })
      : b("Pause…", "secondary", async () => {
        const ok = await confirmAction(`Pause policy ${p.name}?`, [
          `No backup, prune or verification of ${volumes} runs on its calendars until it is resumed.`,
          "Slots that pass while it is paused are not caught up.",
        ], "Pause", false);
        if (!ok) return;
        await post(`${path}/pause`);
        notify(`Paused policy ${p.name}`);
        await refreshNow();
      }),
    b("Delete policy…", "danger", async () => {
      const ok = await confirmAction(`Delete policy ${p.name}?`, [
        `Its calendars, state and run history are deleted: ${volumes} are no longer backed up by it.`,
        "The backups it made stay (with their label and retention).",
      ], "Delete policy");
      if (!ok) return;
      await del(path);
      notify(`Deleted policy ${p.name}`);
      go("#/policies");
    }));
}

/** `#/policies/NAME`. */
export const policyPage = {
  mount(view, name) {
    const path = `/v1/policies/${seg(name)}`;
    const head = el("div", { id: "policy-record" });
    const acts = el("div");
    const next = el("div", { id: "policy-next" });
    const hist = el("div", { id: "policy-history" });
    const edit = el("div");
    view.append(
      el("p", {}, el("a", { href: "#/policies" }, "← Policies")),
      el("h1", {}, `Policy ${name}`),
      el("div", { class: "grid" }, card("Settings", head), card("Actions", acts)),
      card("Next runs", next),
      card("History", hist),
      card("Change settings", edit),
    );
    const go = (hash) => { location.hash = hash; };
    return {
      async refresh() {
        const [p, n, h] = await Promise.all([get(path), get(`${path}/next`), get(`${path}/history`)]);
        update(head, p, () => el("div", {}, el("dl", { class: "record" }, [
          ["State", p.running ? [badge("running"), p.running.job != null ? ` job ${p.running.job}` : ""] : p.paused ? badge("paused") : badge("active", "complete")],
          ["Volumes", `${p.volumes.join(" ")} → ${p.matched_volumes.join(", ") || "none now"}`],
          ["Backup set", p.set ? "yes: one set at one instant" : "no"],
          ["Keep", keepText(p.keep)],
          ["Copy", p.copy ? `${p.copy} to vault ${p.copy_to}` : "none"],
          ["Vault keep", p.copy ? keepText(p.vault_keep) : "—"],
          ["Verify budget", p.verify_budget ? bytes(p.verify_budget) : "none"],
          ["Label", p.label], ["Program", p.program], ["Meta", metaText(p.meta) || "—"],
          ["Time zone", p.tz], ["Last success", when(p.last_success)],
          ["Created", when(p.created)], ["Updated", when(p.updated)],
        ].map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])), el("h3", {}, "Calendars"), schedules(p)));
        update(acts, [p.paused, p.running, p.matched_volumes, p.keep, p.schedules.map((s) => s.steps)], () => actions(p, go));
        update(next, n, () => (n.paused
          ? el("p", { class: "muted" }, "Paused: nothing runs until it is resumed.")
          : table(null, [
            { label: "Calendar", cell: (s) => [badge(s.track), ` ${s.calendar}`] },
            { label: `Next slots (${n.tz})`, cell: (s) => s.local.map((t) => el("div", {}, t)) },
            { label: "In UTC", cell: (s) => s.times.map((t) => el("div", {}, when(t))) },
          ], n.schedules, "No calendar.")));
        update(hist, h, () => table(null, [
          { label: "Run", num: true, cell: (r) => `${r.run}` },
          { label: "Trigger", cell: (r) => `${r.trigger}${r.slots_missed ? ` (+${r.slots_missed} missed)` : ""}` },
          { label: "Started", cell: (r) => when(r.started) },
          { label: "Ended", cell: (r) => when(r.ended) },
          { label: "Result", cell: runLine },
        ], h, "No runs yet."));
        update(edit, [p.volumes, p.snapshot, p.verify, p.keep, p.copy, p.copy_to, p.vault_keep, p.verify_budget, p.label, p.meta, p.tz, p.set], () => form(
          { id: "update-policy", "aria-label": "Change the policy's settings" },
          async (d) => {
            const body = changes(p, d);
            if (!Object.keys(body).length) throw new Error("Nothing changed.");
            await api("PATCH", path, body);
            notify(`Updated policy ${p.name}: ${Object.keys(body).join(", ")}`);
            await refreshNow();
          },
          settingsFields(p, true),
          el("div", {}, el("button", { type: "submit" }, "Save changes")),
        ));
      },
    };
  },
};

// Jobs (live progress: bytes done, rate, ETA; cancel) and copy pairs (state; create, split,
// resync, delete).

import { del, get, post, seg, when } from "./api.js";
import { act, badge, card, confirmAction, el, field, form, notify, progress, table, update } from "./ui.js";
import { refreshNow } from "./main.js";

export const jobsPage = {
  mount(view) {
    const slot = el("div", { id: "job-list" });
    view.append(el("h1", {}, "Jobs"), card(null, slot));
    return {
      async refresh() {
        const jobs = (await get("/v1/jobs")).sort((a, b) => b.id - a.id);
        update(slot, jobs, () => table(null, [
          { label: "Job", num: true, cell: (j) => `${j.id}` },
          { label: "Kind", cell: (j) => j.kind },
          { label: "Target", cell: (j) => j.target },
          { label: "State", cell: (j) => badge(j.state) },
          { label: "Progress", cell: (j) => (j.state === "running" ? progress(j) : j.error ? el("span", { class: "error" }, j.error) : "") },
          { label: "Started", cell: (j) => when(j.created) },
          { label: "Finished", cell: (j) => when(j.finished) },
          {
            label: "Actions",
            cell: (j) => (j.state === "running"
              ? el("button", {
                type: "button", class: "secondary", "aria-label": `Cancel job ${j.id}`,
                onclick: () => act(async () => {
                  await post(`/v1/jobs/${j.id}/cancel`);
                  notify(`Asked job ${j.id} to stop`);
                  await refreshNow();
                }),
              }, "Cancel")
              : ""),
          },
        ], jobs, "No jobs since the daemon started."));
      },
    };
  },
};

function pairActions(p) {
  const b = (label, fn, cls = "secondary") => el("button", { type: "button", class: cls, "aria-label": `${label} ${p.name}`, onclick: () => act(fn) }, label);
  const done = async (what) => {
    notify(what);
    await refreshNow();
  };
  return el("div", { class: "row" },
    p.state === "pair" ? b("Split", async () => { await post(`/v1/pairs/${seg(p.name)}/split`); await done(`Split ${p.name}`); }) : null,
    p.state === "split" || p.state === "error"
      ? [b("Resync", async () => { await post(`/v1/pairs/${seg(p.name)}/resync`, {}); await done(`Resyncing ${p.name}`); }),
        b("Reverse resync", async () => {
          const ok = await confirmAction(`Reverse resync ${p.name}?`, [
            `What changed on ${p.primary} since the split is overwritten with ${p.secondary}'s content.`,
          ], "Reverse resync");
          if (ok) { await post(`/v1/pairs/${seg(p.name)}/resync`, { reverse: true }); await done(`Reverse resyncing ${p.name}`); }
        })]
      : null,
    b("Delete", async () => {
      const ok = await confirmAction(`Delete pair ${p.name}?`, [
        `${p.secondary} stops being kept as a copy of ${p.primary}; both volumes stay.`,
      ], "Delete pair");
      if (ok) { await del(`/v1/pairs/${seg(p.name)}`); await done(`Deleted pair ${p.name}`); }
    }, "danger"));
}

export const pairsPage = {
  mount(view) {
    const slot = el("div", { id: "pair-list" });
    const create = form({ "aria-label": "Create a pair" }, async (d, f) => {
      const body = { primary: d.primary, secondary: d.secondary };
      if (d.pace) body.pace = Number(d.pace);
      const r = await post("/v1/pairs", body);
      notify(`Pair ${r.pair.name} created${r.warning ? `: ${r.warning}` : ""}`);
      f.reset();
      await refreshNow();
    }, field("Primary volume", { name: "primary", required: true }),
    field("Secondary volume", { name: "secondary", required: true }),
    field("Pace (bytes/s, optional)", { name: "pace", type: "number", min: 1 }),
    el("div", {}, el("button", { type: "submit" }, "Create pair")));
    view.append(el("h1", {}, "Pairs"), card("Create a pair", create), card(null, slot));
    return {
      async refresh() {
        const [pairs, jobs] = await Promise.all([get("/v1/pairs"), get("/v1/jobs")]);
        const byId = new Map(jobs.map((j) => [j.id, j]));
        update(slot, [pairs, pairs.map((p) => byId.get(p.job))], () => table(null, [
          { label: "Pair", cell: (p) => p.name },
          { label: "Primary", cell: (p) => p.primary || "—" },
          { label: "Secondary", cell: (p) => p.secondary || "—" },
          { label: "State", cell: (p) => [badge(p.state), p.reason ? el("span", { class: "error" }, ` ${p.reason}`) : null] },
          { label: "Copy", cell: (p) => (byId.get(p.job) && byId.get(p.job).state === "running" ? progress(byId.get(p.job)) : "") },
          { label: "Split at", cell: (p) => when(p.split) },
          { label: "Actions", cell: pairActions },
        ], pairs, "No pairs."));
      },
    };
  },
};

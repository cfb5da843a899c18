// One volume: its record and NBD URI, resize / rename / snapshot / delete, its snapshots
// (clone, delete), backing it up now, its backup timeline and prune.

import { bytes, del, get, parseSize, post, query, seg, when } from "./api.js";
import { act, badge, card, confirmAction, el, field, form, notify, size, table, update, uriBox } from "./ui.js";
import { refreshNow } from "./main.js";
import { backUpForm, timeline } from "./backups.js";
import { pruneCard } from "./prune.js";
import { pairStates } from "./volumes.js";

function record(v, pair, uri) {
  const rows = [
    ["Size", size(v.size)],
    ["Used", size(v.used)],
    ["Unique", size(v.unique)],
    ["Owned (what deleting it and its snapshots frees)", size(v.owned)],
    ["Snapshots", `${v.snapshots}`],
    ["Placement", v.device == null ? "device with the most free space" : `device ${v.device}`],
    ["Data on", v.device_bytes.map((d) => `device ${d.device}: ${bytes(d.bytes)}`).join(", ") || "—"],
    ["Clone of", v.origin ? `${v.origin.volume}@${v.origin.snapshot}` : "—"],
    ["Pair", pair ? [badge(pair.pair.state), ` ${pair.role} of ${pair.pair.name}`] : "—"],
    ["Protection", v.protection || "—"],
    ["Created", when(v.created)],
    ["NBD URI", uri ? uriBox(uri, `NBD URI of ${v.name}`) : "—"],
  ];
  return el("dl", { class: "record", id: "volume-record" }, rows.map(([k, val]) => [el("dt", {}, k), el("dd", {}, val)]));
}

/** What deleting the volume loses, for its confirmation. */
function deleteLines(v, snaps, exp) {
  const lines = [
    `All data of volume ${v.name} (${bytes(v.size)}, ${bytes(v.used)} written); what its deletion frees: ${bytes(v.unique)}.`,
  ];
  if (snaps.length) {
    lines.push(`Its ${snaps.length} snapshot(s): ${snaps.map((s) => s.name).join(", ")} (with them: ${bytes(v.owned)} freed), and every backup kept in them.`);
  }
  if (exp && exp.connected.length) lines.push(`Connected hosts will be disconnected: ${exp.connected.join(", ")}.`);
  lines.push("This cannot be undone.");
  return lines;
}

function actions(name, go) {
  return el(
    "div",
    {},
    form({ "aria-label": "Resize" }, async (d) => {
      const v = await post(`/v1/volumes/${seg(name)}/resize`, { size: parseSize(d.size) });
      notify(`${v.name} is now ${bytes(v.size)}`);
      await refreshNow();
    }, field("New size (volumes only grow)", { name: "size", required: true, placeholder: "20G" }),
    el("div", {}, el("button", { type: "submit" }, "Resize"))),
    form({ "aria-label": "Rename" }, async (d) => {
      const v = await post(`/v1/volumes/${seg(name)}/rename`, { name: d.name });
      notify(`Renamed ${name} to ${v.name}`);
      go(v.name);
    }, field("New name", { name: "name", required: true }),
    el("div", {}, el("button", { type: "submit" }, "Rename"))),
    form({ "aria-label": "Snapshot" }, async (d) => {
      const s = await post(`/v1/volumes/${seg(name)}/snapshots`, d.name ? { name: d.name } : {});
      notify(`Snapshot ${s.name} taken`);
      await refreshNow();
    }, field("Snapshot name (empty: the time)", { name: "name" }),
    el("div", {}, el("button", { type: "submit" }, "Take snapshot"))),
  );
}

function cloneForm(name, snaps) {
  if (!snaps.length) return null;
  return form({ "aria-label": "Clone a snapshot" }, async (d, f) => {
    const v = await post(`/v1/volumes/${seg(name)}/snapshots/${seg(d.snapshot)}/clone`, { name: d.name, device: null });
    notify(`Cloned ${name}@${d.snapshot} as ${v.name}`);
    f.reset();
    await refreshNow();
  }, field("Snapshot", { name: "snapshot" }, "select", snaps.map((s) => el("option", { value: s.name }, s.name))),
  field("New volume name", { name: "name", required: true }),
  el("div", {}, el("button", { type: "submit" }, "Clone")));
}

function snapshotTable(name, snaps) {
  return el("div", {}, cloneForm(name, snaps), table(
    null,
    [
      { label: "Snapshot", cell: (s) => s.name },
      { label: "Created", cell: (s) => when(s.created) },
      { label: "Used", num: true, cell: (s) => size(s.used) },
      { label: "Unique", num: true, cell: (s) => size(s.unique) },
      { label: "Clones", cell: (s) => s.clones.join(", ") || "—" },
      {
        label: "Actions",
        cell: (s) => el(
          "div", { class: "row" },
          el("button", {
            type: "button", class: "danger", "aria-label": `Delete snapshot ${s.name}`,
            onclick: () => act(async () => {
              const ok = await confirmAction(`Delete snapshot ${name}@${s.name}?`, [
                `Its content at ${when(s.created)} is lost; deleting it frees ${bytes(s.unique)}.`,
                "This cannot be undone.",
              ], "Delete snapshot");
              if (!ok) return;
              await del(`/v1/volumes/${seg(name)}/snapshots/${seg(s.name)}`);
              notify(`Deleted snapshot ${name}@${s.name}`);
              await refreshNow();
            }),
          }, "Delete"),
        ),
      },
    ],
    snaps,
    "No snapshots.",
  ));
}

export function mount(view, name) {
  const go = (n) => (location.hash = `#/volumes/${encodeURIComponent(n)}`);
  const head = el("div");
  const snapSlot = el("div");
  const line = timeline(name);
  const deleteButton = el("button", {
    type: "button", class: "danger", id: "delete-volume",
    onclick: () => act(async () => {
      const [v, snaps, exp] = await Promise.all([
        get(`/v1/volumes/${seg(name)}`),
        get(`/v1/snapshots${query({ volume: name })}`),
        get("/v1/exports").then((l) => l.find((e) => e.name === name)),
      ]);
      const ok = await confirmAction(`Delete volume ${name}?`, deleteLines(v, snaps, exp), "Delete volume");
      if (!ok) return;
      await del(`/v1/volumes/${seg(name)}${query({ with_snapshots: snaps.length ? "true" : "", force: exp && exp.connected.length ? "true" : "" })}`);
      notify(`Deleted volume ${name}`);
      location.hash = "#/volumes";
    }),
  }, "Delete volume…");
  view.append(
    el("p", {}, el("a", { href: "#/volumes" }, "← Volumes")),
    el("h1", {}, `Volume ${name}`),
    el("div", { class: "grid" }, card("Volume", head), card("Change", actions(name, go), el("div", { class: "row" }, deleteButton))),
    card("Snapshots", snapSlot),
    card("Back up now", backUpForm(name)),
    line.node,
    pruneCard(name),
  );
  return {
    async refresh() {
      const [v, snaps, pairs, exportsList] = await Promise.all([
        get(`/v1/volumes/${seg(name)}`),
        get(`/v1/snapshots${query({ volume: name })}`),
        get("/v1/pairs"),
        get("/v1/exports"),
      ]);
      const exp = exportsList.find((e) => e.name === name);
      update(head, [v, pairs, exp], () => record(v, pairStates(pairs).get(name), exp && exp.uri));
      update(snapSlot, snaps, () => snapshotTable(name, snaps));
      await line.refresh();
    },
  };
}

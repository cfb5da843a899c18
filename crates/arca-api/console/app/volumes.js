// The volume list: size, use, snapshots, placement, pair state, protection, newest backup and
// NBD URI of each volume, paged and filtered in the browser; and the form creating a volume.

import { get, parseSize, post, when } from "./api.js";
import { badge, card, el, field, form, notify, size, table, update, uriBox } from "./ui.js";
import { refreshNow } from "./main.js";

const PAGE = 50;

/** The pair role and state of each volume, by name. */
export function pairStates(pairs) {
  const out = new Map();
  for (const p of pairs) {
    if (p.primary) out.set(p.primary, { role: "primary", pair: p });
    if (p.secondary) out.set(p.secondary, { role: "secondary", pair: p });
  }
  return out;
}

function placement(v) {
  const pref = v.device == null ? "any device" : `device ${v.device}`;
  const lies = v.device_bytes.map((d) => `dev ${d.device}`).join(", ");
  return `${pref}${lies ? ` (data on ${lies})` : ""}`;
}

function createForm(devices) {
  return form(
    { id: "create-volume", "aria-label": "Create a volume" },
    async (data, f) => {
      const body = {
        name: data.name,
        size: parseSize(data.size),
        device: data.device === "" ? null : Number(data.device),
      };
      const v = await post("/v1/volumes", body);
      notify(`Created volume ${v.name}`);
      f.reset();
      await refreshNow();
    },
    field("Name", { name: "name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}", autocomplete: "off" }),
    field("Size", { name: "size", required: true, placeholder: "10G", autocomplete: "off" }),
    field("Device", { name: "device" }, "select",
      el("option", { value: "" }, "Most free space"),
      devices.map((d) => el("option", { value: d.index }, `Device ${d.index}`))),
    el("div", {}, el("button", { type: "submit" }, "Create volume")),
  );
}

export function mount(view) {
  let page = 0;
  let filter = "";
  const list = el("div", { id: "volume-list" });
  const createSlot = el("div");
  const search = field("Filter by name", {
    type: "search", name: "filter",
    oninput: (ev) => {
      filter = ev.target.value;
      page = 0;
      refreshNow();
    },
  });
  view.append(el("h1", {}, "Volumes"), card("Create a volume", createSlot), card(null, search, list));
  let devicesShown = -1;
  return {
    async refresh() {
      const [vols, pairs, exportsList, newest, pool] = await Promise.all([
        get("/v1/volumes"), get("/v1/pairs"), get("/v1/exports"), get("/v1/newest-backups"), get("/v1/pool"),
      ]);
      if (devicesShown !== pool.devices.length) {
        devicesShown = pool.devices.length;
        createSlot.replaceChildren(createForm(pool.devices));
      }
      const roles = pairStates(pairs);
      const uris = new Map(exportsList.map((e) => [e.name, e.uri]));
      const newestBy = new Map(newest.filter((n) => n.backup != null).map((n) => [n.volume, n]));
      const shown = vols.filter((v) => v.name.toLowerCase().includes(filter.toLowerCase()));
      const pages = Math.max(1, Math.ceil(shown.length / PAGE));
      page = Math.min(page, pages - 1);
      const rows = shown.slice(page * PAGE, (page + 1) * PAGE);
      update(list, [rows, pairs, exportsList, newest, page, pages, shown.length, vols.length], () => el("div", {},
        table(
          `${shown.length} of ${vols.length} volumes`,
          [
            { label: "Name", cell: (v) => el("a", { href: `#/volumes/${encodeURIComponent(v.name)}` }, v.name) },
            { label: "Size", num: true, cell: (v) => size(v.size) },
            { label: "Used", num: true, cell: (v) => size(v.used) },
            { label: "Unique", num: true, cell: (v) => size(v.unique) },
            { label: "Snapshots", num: true, cell: (v) => `${v.snapshots}` },
            { label: "Placement", cell: placement },
            {
              label: "Pair",
              cell: (v) => {
                const r = roles.get(v.name);
                return r ? [badge(r.pair.state), ` ${r.role} of ${r.pair.name}`] : "—";
              },
            },
            { label: "Newest backup", cell: (v) => (newestBy.get(v.name) ? when(newestBy.get(v.name).point_in_time) : el("span", { class: "warn" }, "none")) },
            { label: "Protection", cell: (v) => v.protection || "—" },
            { label: "NBD URI", cell: (v) => (uris.has(v.name) ? uriBox(uris.get(v.name), `NBD URI of ${v.name}`) : "—") },
          ],
          rows,
          filter ? "No volume matches." : "No volumes yet.",
        ),
        pages > 1
          ? el("div", { class: "pager" },
            el("button", { type: "button", class: "secondary", disabled: page === 0, onclick: () => { page -= 1; refreshNow(); } }, "Previous"),
            `Page ${page + 1} of ${pages}`,
            el("button", { type: "button", class: "secondary", disabled: page + 1 >= pages, onclick: () => { page += 1; refreshNow(); } }, "Next"))
          : null,
      ));
    },
  };
}

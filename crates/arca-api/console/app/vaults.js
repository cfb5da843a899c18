// Vaults: repositories outside the pool that backups are copied to. The list, a vault's page
// (its registration and the backups with a copy in it), add, and remove (confirmed, naming the
// copies that stop being listed). The key of an encrypted vault is never exported from here:
// that is the CLI's `arca vault key export`, kept off a page a browser may cache or show.

import { del, get, post, seg, when } from "./api.js";
import { act, badge, card, confirmAction, el, field, form, notify, table, update } from "./ui.js";
import { refreshNow } from "./main.js";
import { timeline } from "./backups.js";

function kind(v) {
  return [badge(v.kind, "copy"), v.encrypted ? badge("encrypted", "held") : null];
}

function addForm() {
  const check = (name, label) => el("div", {},
    el("label", { for: `vault-${name}` }, label),
    el("input", { type: "checkbox", name, id: `vault-${name}`, value: "1" }));
  return form({ id: "add-vault", "aria-label": "Add a vault" }, async (d, f) => {
    const body = { name: d.name, url: d.url };
    for (const k of ["endpoint", "region", "access_key", "secret_key"]) if (d[k]) body[k] = d[k];
    if (d.allow_http) body.allow_http = true;
    if (d.encrypt) body.encrypt = true;
    const v = await post("/v1/vaults", body);
    notify(`Added vault ${v.name}${v.encrypted ? " (encrypted: export its key with the CLI and keep it safe)" : ""}`);
    f.reset();
    await refreshNow();
  },
  field("Name", { name: "name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}", autocomplete: "off" }),
  field("URL (file:///PATH or s3://BUCKET/PREFIX)", { name: "url", required: true, autocomplete: "off" }),
  field("S3 endpoint (https://…)", { name: "endpoint", autocomplete: "off" }),
  field("S3 region", { name: "region", autocomplete: "off" }),
  field("S3 access key", { name: "access_key", autocomplete: "off" }),
  field("S3 secret key", { name: "secret_key", type: "password", autocomplete: "new-password" }),
  check("allow_http", "Allow plain http"),
  check("encrypt", "Encrypt"),
  el("div", {}, el("button", { type: "submit" }, "Add vault")));
}

/** Asks, then removes; with copies listed in it, forced (the confirmation says what goes). */
async function remove(v, after) {
  const lines = v.backups
    ? [`${v.backups} backup(s) list a copy in ${v.name}: those copy entries are dropped from their records, and a backup that lives only there becomes deleted.`]
    : [`No backup lists a copy in ${v.name}.`];
  lines.push(`Only the registration goes: the data at ${v.url} stays where it is${v.encrypted ? ", and without the exported key it cannot be read again" : ""}.`);
  const ok = await confirmAction(`Remove vault ${v.name}?`, lines, "Remove vault");
  if (!ok) return;
  const r = await del(`/v1/vaults/${seg(v.name)}${v.backups ? "?force=true" : ""}`);
  notify(`Removed vault ${v.name}${r.dropped_from.length ? `; copies forgotten in backups ${r.dropped_from.join(", ")}` : ""}`);
  await after();
}

/** `#/vaults`. */
export const listPage = {
  mount(view) {
    const slot = el("div", { id: "vault-list" });
    view.append(el("h1", {}, "Vaults"), card(null, slot), card("Add a vault", addForm()));
    return {
      async refresh() {
        const vaults = await get("/v1/vaults");
        update(slot, vaults, () => table(null, [
          { label: "Vault", cell: (v) => el("a", { href: `#/vaults/${seg(v.name)}` }, v.name) },
          { label: "Kind", cell: kind },
          { label: "URL", cell: (v) => v.url },
          { label: "Backups copied", num: true, cell: (v) => `${v.backups}` },
          { label: "Added", cell: (v) => when(v.added) },
          {
            label: "Actions",
            cell: (v) => el("button", {
              type: "button", class: "danger", "aria-label": `Remove vault ${v.name}…`,
              onclick: () => act(() => remove(v, refreshNow)),
            }, "Remove…"),
          },
        ], vaults, "No vaults. A vault keeps copies of backups off the array: a directory or an S3 bucket."));
      },
    };
  },
};

/** `#/vaults/NAME`. */
export const vaultPage = {
  mount(view, name) {
    const head = el("div", { id: "vault-record" });
    const acts = el("div");
    const line = timeline(null, { in_vault: name }, "Backups with a copy here");
    view.append(
      el("p", {}, el("a", { href: "#/vaults" }, "← Vaults")),
      el("h1", {}, `Vault ${name}`),
      el("div", { class: "grid" }, card("Registration", head), card("Actions", acts)),
      line.node,
    );
    return {
      async refresh() {
        const v = await get(`/v1/vaults/${seg(name)}`);
        update(head, v, () => el("dl", { class: "record" }, [
          ["Kind", kind(v)], ["URL", v.url], ["Endpoint", v.endpoint || "—"], ["Region", v.region || "—"],
          ["Plain http", v.allow_http ? el("span", { class: "warn" }, "allowed") : "no"],
          ["Credentials", v.credentials ? "stored (never shown)" : "none"],
          ["Encrypted", v.encrypted ? "yes: the key is in the pool's metadata; export it with the CLI" : "no"],
          ["Vault id", v.vault_id || "not opened yet"], ["Added", when(v.added)],
          ["Backups copied", `${v.backups}`],
        ].map(([k, x]) => [el("dt", {}, k), el("dd", {}, x)])));
        update(acts, [v.backups, v.url, v.encrypted], () => el("div", { class: "row" },
          el("button", {
            type: "button", class: "danger",
            onclick: () => act(() => remove(v, async () => { location.hash = "#/vaults"; })),
          }, "Remove vault…")));
        await line.refresh();
      },
    };
  },
};

// DOM helpers: elements, tables, labelled fields, the confirmation dialog, notices. Text goes in
// as text (never parsed as HTML), so names from the API cannot inject markup.

import { bytes } from "./api.js";

/** `el("a", {href, class, onclick}, child, ...)`: attributes, `on*` listeners, children. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
}

/** A size shown for people with the exact bytes machine-readable (`<data value>`). */
export function size(n) {
  return el("data", { value: n, title: `${n} bytes` }, bytes(n));
}

export function badge(text, kind = text) {
  return el("span", { class: `badge ${kind}` }, text);
}

/** A table: columns are `{label, cell(row) -> node|text, num}`; `empty` when no rows. */
export function table(caption, columns, rows, empty = "None.", rowClass = () => "") {
  if (!rows.length) return el("p", { class: "muted" }, empty);
  return el(
    "table",
    {},
    caption ? el("caption", {}, caption) : null,
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : "" }, c.label)))),
    el(
      "tbody",
      {},
      rows.map((r) =>
        el("tr", { class: rowClass(r) }, columns.map((c) => el("td", { class: c.num ? "num" : "" }, c.cell(r)))),
      ),
    ),
  );
}

let fieldSeq = 0;

/** A labelled input: `field("Name", {name: "name", required: true})`. */
export function field(label, attrs = {}, tag = "input", ...options) {
  const id = attrs.id || `f${++fieldSeq}`;
  const input = el(tag, { ...attrs, id }, ...options);
  return el("div", {}, el("label", { for: id }, label), input);
}

/** A form in a row; `submit(data, form)` runs on submit with the named values. */
export function form(attrs, submit, ...children) {
  const f = el("form", { class: "row", ...attrs }, ...children);
  const out = el("p", { class: "error", role: "alert" });
  f.append(out);
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    out.textContent = "";
    const data = Object.fromEntries(new FormData(f).entries());
    const buttons = f.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      await submit(data, f, ev.submitter);
    } catch (e) {
      out.textContent = e.message;
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });
  return f;
}

/**
 * Asks before an action: `lines` say what will happen and what will be lost. Resolves true
 * when the person confirms. Escape or Cancel resolves false.
 */
export function confirmAction(title, lines, action, danger = true) {
  return new Promise((resolve) => {
    const d = el(
      "dialog",
      { "aria-labelledby": "confirm-title", id: "confirm" },
      el("h2", { id: "confirm-title" }, title),
      el("ul", {}, lines.map((l) => el("li", {}, l))),
    );
    const done = (answer) => {
      d.close();
      d.remove();
      resolve(answer);
    };
    const cancel = el("button", { type: "button", class: "secondary", onclick: () => done(false) }, "Cancel");
    const ok = el("button", { type: "button", class: danger ? "danger" : "", onclick: () => done(true) }, action);
    d.append(el("div", { class: "row" }, cancel, ok));
    d.addEventListener("cancel", (ev) => {
      ev.preventDefault();
      done(false);
    });
    document.body.append(d);
    d.showModal();
    cancel.focus();
  });
}

let toastTimer = null;

/** A short notice; errors stay until the next notice. */
export function notify(message, isError = false) {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.className = `toast show${isError ? " error" : ""}`;
  t.setAttribute("role", isError ? "alert" : "status");
  clearTimeout(toastTimer);
  if (!isError) toastTimer = setTimeout(() => (t.className = "toast"), 5000);
}

/** Runs an action from a button; its failure is shown with the API's message. */
export async function act(fn) {
  try {
    await fn();
  } catch (e) {
    notify(e.message, true);
  }
}

export function card(title, ...children) {
  return el("section", { class: "card" }, title ? el("h2", {}, title) : null, ...children);
}

/** A job's progress: bar, bytes done of total, rate and ETA. */
export function progress(job) {
  const total = job.bytes_total || 0;
  const pct = total ? Math.floor((job.bytes_done / total) * 100) : 0;
  const eta = job.eta_seconds == null ? "" : `, ETA ${Math.ceil(job.eta_seconds)} s`;
  return el(
    "div",
    { class: "job-progress" },
    el("progress", { max: total || 1, value: job.bytes_done, "aria-label": `job ${job.id} progress` }),
    el("span", { class: "muted" }, `${pct}% · ${bytes(job.bytes_done)} of ${bytes(total)} · ${bytes(job.rate || 0)}/s${eta}`),
  );
}

/** An NBD URI in a read-only box with a Copy button. */
export function uriBox(uri, label) {
  const input = el("input", { value: uri, readonly: true, "aria-label": label });
  const copy = el(
    "button",
    {
      type: "button",
      class: "secondary",
      "aria-label": `Copy ${label}`,
      onclick: async () => {
        input.select();
        try {
          await navigator.clipboard.writeText(uri);
          notify(`Copied ${uri}`);
        } catch {
          notify("Selected: press Ctrl+C to copy");
        }
      },
    },
    "Copy",
  );
  return el("div", { class: "uri" }, input, copy);
}

/**
 * Redraws `slot` from `data` only when the data changed since the last redraw: polling then
 * leaves focus, selections and scroll alone while nothing happens.
 */
export function update(slot, data, build) {
  const key = JSON.stringify(data);
  if (slot.dataset.key === key) return;
  slot.dataset.key = key;
  slot.replaceChildren(build());
}

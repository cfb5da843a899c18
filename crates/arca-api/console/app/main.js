// The application: a hash router over the pages and the refresh loop that keeps the shown page
// live (it polls the API every POLL_MS while the tab is visible; a page's forms are built once
// and keep what is typed, only its live parts are redrawn).

import { setToken } from "./api.js";
import { notify } from "./ui.js";
import * as overview from "./overview.js";
import * as volumes from "./volumes.js";
import * as volume from "./volume.js";
import * as backups from "./backups.js";
import * as backup from "./backup.js";
import * as jobs from "./jobs.js";
import * as policies from "./policies.js";
import * as vaults from "./vaults.js";

const POLL_MS = 2000;

// [pattern, page module, nav entry that is current]
const ROUTES = [
  [/^#?\/?$/, overview, "#/"],
  [/^#\/volumes$/, volumes, "#/volumes"],
  [/^#\/volumes\/([^/]+)$/, volume, "#/volumes"],
  [/^#\/backups$/, backups, "#/backups"],
  [/^#\/backups\/(\d+)$/, backup, "#/backups"],
  [/^#\/jobs$/, jobs.jobsPage, "#/jobs"],
  [/^#\/pairs$/, jobs.pairsPage, "#/pairs"],
  [/^#\/policies$/, policies.listPage, "#/policies"],
  [/^#\/policies\/([^/]+)$/, policies.policyPage, "#/policies"],
  [/^#\/vaults$/, vaults.listPage, "#/vaults"],
  [/^#\/vaults\/([^/]+)$/, vaults.vaultPage, "#/vaults"],
];

let page = null;
let seq = 0;

async function refresh(p) {
  if (!p || p !== page) return;
  if (p.busy) {
    p.again = true;
    return;
  }
  p.busy = true;
  p.again = false;
  try {
    await p.refresh();
    p.failed = false;
  } catch (e) {
    // Shown once per failure streak, so a daemon that went away does not flood the notices.
    if (!p.failed) notify(`Refresh failed: ${e.message}`, true);
    p.failed = true;
  } finally {
    p.busy = false;
  }
  if (p.again) await refresh(p);
}

function route() {
  const hash = location.hash || "#/";
  const view = document.getElementById("view");
  const found = ROUTES.map(([re, mod, nav]) => [re.exec(hash), mod, nav]).find(([m]) => m);
  if (page && page.stop) page.stop();
  view.replaceChildren();
  document.querySelectorAll("#nav a").forEach((a) => {
    if (found && a.getAttribute("href") === found[2]) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  if (!found) {
    page = null;
    view.textContent = `No page ${hash}.`;
    return;
  }
  const [match, mod] = found;
  const params = match.slice(1).map(decodeURIComponent);
  page = mod.mount(view, ...params);
  page.id = ++seq;
  refresh(page);
  document.getElementById("main").focus({ preventScroll: true });
}

/** Called by login.js once the API accepted the token (null when it needs none). */
export function start(token, signOut) {
  setToken(token);
  document.getElementById("nav").hidden = false;
  const logout = document.getElementById("logout");
  logout.hidden = !token;
  logout.addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  setInterval(() => {
    if (document.visibilityState === "visible") refresh(page);
  }, POLL_MS);
  route();
}

/** Redraws the page now (after an action), not at the next tick. */
export function refreshNow() {
  return refresh(page);
}

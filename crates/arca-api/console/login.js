// The login step, the only script served without the token. It finds whether the API needs a
// token, asks for it when it does, and then loads the application (app/main.js). The token is
// kept for this tab only (sessionStorage) and, as hex, in a cookie scoped to /console/app/ so
// that the daemon serves the application's modules (the browser cannot add a bearer header to
// a module load); the API itself only ever reads the Authorization header.

const KEY = "arca-token";
const COOKIE = "arca_console";

function hex(text) {
  return Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
}

function setCookie(token) {
  document.cookie = `${COOKIE}=${hex(token)}; path=/console/app/; SameSite=Strict`;
}

/** Forgets the token: the next load asks for it again. */
export function signOut() {
  sessionStorage.removeItem(KEY);
  document.cookie = `${COOKIE}=; path=/console/app/; SameSite=Strict; max-age=0`;
  location.hash = "#/";
  location.reload();
}

/** Whether the API accepts `token` (null: whether it needs none); throws its other errors. */
async function accepted(token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const r = await fetch("/v1/pool", { headers, cache: "no-store" });
  if (r.ok) return { ok: true };
  let message = `${r.status} ${r.statusText}`;
  try {
    message = (await r.json()).error.message;
  } catch {
    // Not the API's error shape: keep the status line.
  }
  if (r.status === 401) return { ok: false, message };
  throw new Error(message);
}

async function start(token) {
  document.getElementById("login").hidden = true;
  if (token) {
    sessionStorage.setItem(KEY, token);
    setCookie(token);
  }
  const app = await import("/console/app/main.js");
  app.start(token, signOut);
}

async function boot() {
  const form = document.getElementById("login");
  const input = document.getElementById("token");
  const error = document.getElementById("login-error");
  const saved = sessionStorage.getItem(KEY);
  try {
    if ((await accepted(saved)).ok) return await start(saved);
  } catch (e) {
    error.textContent = `The API did not answer: ${e.message}`;
  }
  sessionStorage.removeItem(KEY);
  form.hidden = false;
  input.focus();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      const r = await accepted(input.value);
      if (r.ok) await start(input.value);
      else error.textContent = `Not signed in: ${r.message}`;
    } catch (e) {
      error.textContent = `Not signed in: ${e.message}`;
    }
  });
}

boot();

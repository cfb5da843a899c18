// The API client: every call sends the bearer token as any API client does, and every failure
// becomes an ApiError carrying the API's own message. Also the formatting of sizes and times.

let token = null;

export function setToken(t) {
  token = t;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, "network", `cannot reach the API: ${e.message}`);
  }
  const text = await r.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!r.ok) {
    const err = data && data.error;
    if (err && err.message) throw new ApiError(r.status, err.code, err.message);
    throw new ApiError(r.status, "http", `${r.status} ${r.statusText} ${text}`.trim());
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body = {}) => api("POST", path, body);
export const del = (path) => api("DELETE", path);

/** A path segment. */
export const seg = (s) => encodeURIComponent(s);

/** `?k=v&...` of the parameters that have a value (arrays repeat the key). */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.filter((x) => x !== "").forEach((x) => q.append(k, x));
    else if (v !== undefined && v !== null && v !== "") q.append(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** Bytes for people: binary units, one decimal from KiB up ("1.5 GiB"). */
export function bytes(n) {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u += 1;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${UNITS[u]}`;
}

/** A size as typed: "10G", "512M", "4096" (bytes), binary units. */
export function parseSize(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*$/i.exec(text);
  if (!m) throw new ApiError(0, "invalid", `${JSON.stringify(text)} is not a size (e.g. 10G, 512M)`);
  const power = " KMGTP".indexOf(m[2].toUpperCase() || " ");
  return Math.round(Number(m[1]) * 1024 ** power);
}

/** "2026-12-03 15:40:01 UTC" from RFC 3339. */
export function when(rfc3339) {
  if (!rfc3339) return "—";
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return rfc3339;
  return `${d.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** "5 min ago", "3 d ago". */
export function ago(rfc3339, now = Date.now()) {
  const s = Math.max(0, (now - new Date(rfc3339).getTime()) / 1000);
  return `${duration(s)} ago`;
}

/** Seconds for people: "42 s", "5 min", "3.2 h", "4.0 d". */
export function duration(s) {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

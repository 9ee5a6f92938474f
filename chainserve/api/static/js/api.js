// The page's calls to chainserve: the API key, JSON requests, and errors as readable text.

const KEY_NAME = "chainserve.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY_NAME) ?? localStorage.getItem(KEY_NAME) ?? "";
}

// Kept for this tab only unless `remember`: a key in localStorage outlives the session.
export function saveKey(key, remember) {
  sessionStorage.removeItem(KEY_NAME);
  localStorage.removeItem(KEY_NAME);
  if (key) (remember ? localStorage : sessionStorage).setItem(KEY_NAME, key);
}

// Relative to the page, so a server mounted under a path prefix still works.
export function endpoint(path) {
  return new URL(path, document.baseURI).href;
}

export function requestHeaders() {
  const headers = { "content-type": "application/json" };
  const key = apiKey();
  if (key) headers.authorization = `Bearer ${key}`;
  return headers;
}

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.runId = null;
    this.beforeRun = false; // refused or never delivered: the server ran nothing
  }

  describe() {
    // A status is a refused request; a code without one is a run that failed mid-stream.
    const head = this.status ? `HTTP ${this.status}` : this.code ? "Run failed" : "Error";
    const wait = this.retryAfter ? ` (retry after ${this.retryAfter} s)` : "";
    return `${head}${this.code ? ` · ${this.code}` : ""}: ${this.message}${wait}`;
  }
}

export async function errorFrom(response) {
  const retryAfter = response.headers.get("retry-after");
  const text = await response.text();
  let code = "";
  let runId = null;
  let message = text.trim() || response.statusText;
  try {
    const body = JSON.parse(text);
    if (body?.error?.message) ({ code = "", message, run_id: runId = null } = body.error);
    else if (typeof body?.detail === "string") message = body.detail;
  } catch {
    // Not JSON (a proxy's page): the text is the message.
  }
  const error = new ApiError(response.status, code, message, retryAfter);
  error.runId = runId;
  error.beforeRun = true;
  return error;
}

export function unreachable(error) {
  const failure = new ApiError(0, "", `cannot reach chainserve at ${location.origin} (${error.message})`);
  failure.beforeRun = true;
  return failure;
}

export async function getJSON(path, { method = "GET", body } = {}) {
  let response;
  try {
    response = await fetch(endpoint(path), {
      method,
      headers: requestHeaders(),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw unreachable(error);
  }
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

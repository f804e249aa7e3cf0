// The consultcam HTTP API (DESIGN.md, "HTTP API"): JSON in camelCase, errors as {error, detail}.
// Same-origin only; the clinician cookie or the phone cookie carries authentication, and every unsafe call
// carries the page's CSRF token (consultcam/web/guard.py): first the page's <meta name="csrf-token">, then
// the X-CSRF-Token the server sends with each answer (it changes when the cookie does: pairing, signing in).

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 for a network failure
   * @param {string} name   the server's stable error name ("PairingTokenExpired"), or "NetworkError"
   * @param {string} detail what went wrong and what to do, fit to show to a user
   */
  constructor(status, name, detail, body = null) {
    super(detail);
    this.status = status;
    this.name = name;
    this.detail = detail;
    this.body = body;
  }

  /** Worth trying again: the network, a timeout, rate limiting or a server-side failure. */
  get retryable() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

const FALLBACK_DETAIL = {
  0: "Could not reach consultcam. Check the phone or computer is on the practice network, then try again.",
  401: "You are not signed in. Reload the page to sign in again.",
  403: "This device is not allowed to do that.",
  404: "Not found. It may have expired or been deleted.",
  409: "That cannot be done now: the session has changed. Reload to see its current state.",
  413: "The file is too large.",
  415: "That type of file is not accepted. Use a photo (JPEG, PNG, WebP or HEIC).",
  422: "The server could not use that data.",
  500: "Something went wrong on the consultcam server. Try again in a moment.",
};

function fallbackDetail(status) {
  return FALLBACK_DETAIL[status] ?? FALLBACK_DETAIL[status >= 500 ? 500 : 0];
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
let csrfToken = document.querySelector('meta[name="csrf-token"]')?.content || "";

/** fetch + JSON + ApiError. Resolves to the parsed body, or null for 204. */
export async function request(method, path, body, { signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (UNSAFE.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal,
    });
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    throw new ApiError(0, "NetworkError", fallbackDetail(0));
  }
  csrfToken = response.headers.get("X-CSRF-Token") || csrfToken;
  if (response.status === 204) return null;
  const text = await response.text().catch(() => "");
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    throw new ApiError(response.status, data?.error || `Http${response.status}`,
      data?.detail || fallbackDetail(response.status), data);
  }
  return data;
}

const enc = encodeURIComponent;
const sessionPath = (sessionId) => `/api/sessions/${enc(sessionId)}`;
const imagePath = (sessionId, imageId) => `${sessionPath(sessionId)}/images/${enc(imageId)}`;

export const api = {
  createSession: (body) => request("POST", "/api/sessions", body),
  getSession: (sessionId) => request("GET", sessionPath(sessionId)),
  cancelSession: (sessionId) => request("DELETE", sessionPath(sessionId)),
  newPairing: (sessionId) => request("POST", `${sessionPath(sessionId)}/pairing`, {}),
  pair: (token) => request("POST", "/api/pair", { token }),
  presignUpload: (sessionId, body) => request("POST", `${sessionPath(sessionId)}/uploads`, body),
  registerImage: (sessionId, body) => request("POST", `${sessionPath(sessionId)}/images`, body),
  listImages: (sessionId) => request("GET", `${sessionPath(sessionId)}/images`),
  getImage: (sessionId, imageId) => request("GET", imagePath(sessionId, imageId)),
  updateImage: (sessionId, imageId, body) => request("PATCH", imagePath(sessionId, imageId), body),
  deleteImage: (sessionId, imageId) => request("DELETE", imagePath(sessionId, imageId)),
  /** `body`: {imageIds: [...]} (the photos the page shows) or {all: true}; the server refuses anything vaguer. */
  commit: (sessionId, body) => request("POST", `${sessionPath(sessionId)}/commit`, body),
  recordConsent: (sessionId, body) => request("PUT", `${sessionPath(sessionId)}/consent`, body),
  /** The clinician signs every phone out; a phone signs itself out (`reason: "wrong-patient"`). */
  revokePhone: (sessionId, reason) =>
    request("DELETE", `${sessionPath(sessionId)}/phone${reason ? `?reason=${enc(reason)}` : ""}`),
  bodySites: () => request("GET", "/api/terminology/body-sites"),
  /** End this computer's clinician sign-in on the server (204, or {redirect} to the identity provider's
   *  end-session page after an OIDC sign-in); the cookie is deleted too. */
  signOut: () => request("POST", "/logout"),
  downloadUrl: (sessionId, imageId) => `${imagePath(sessionId, imageId)}/download`,
  sessionDownloadUrl: (sessionId) => `${sessionPath(sessionId)}/download`,
  eventsUrl: (sessionId) => `${sessionPath(sessionId)}/events`,
};

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

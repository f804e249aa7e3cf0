// Upload one prepared photo: presign → PUT the bytes to the signed URL (with progress) → register, with its
// metadata. Each step is tried three times with exponential back-off; errors that retrying cannot fix (session
// full, not an image, too large) fail at once with the server's explanation. While the phone is offline the
// queue waits instead (no attempt is spent) and carries on when the browser says the network is back. A pool
// runs a few photos at a time so one failed photo never stops the others.

import { ApiError, api, sleep } from "./api.js";
import { afterFailure } from "./upload-retry.js";

// Headers a page may not set on XMLHttpRequest (the browser sets them itself).
const FORBIDDEN_HEADERS = new Set(["content-length", "host", "connection", "accept-encoding", "cookie", "origin", "referer"]);

/**
 * PUT `blob` to a signed upload URL with exactly the headers the server gave.
 * @param {{uploadUrl: string, method?: string, headers?: object}} target from POST …/uploads
 * @param {(fraction: number) => void} onProgress 0…1 as bytes leave the phone
 */
export function putBlob(target, blob, onProgress, { timeoutMs = 120_000, signal } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.open(target.method || "PUT", target.uploadUrl);
    for (const [name, value] of Object.entries(target.headers || {})) {
      if (!FORBIDDEN_HEADERS.has(name.toLowerCase())) xhr.setRequestHeader(name, value);
    }
    xhr.timeout = timeoutMs;
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total > 0) onProgress?.(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress?.(1);
        resolve();
        return;
      }
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      reject(new ApiError(xhr.status, body?.error || `Http${xhr.status}`,
        body?.detail || `The photo store refused the upload (HTTP ${xhr.status}).`, body));
    });
    const networkError = () => reject(new ApiError(0, "NetworkError",
      "The upload was interrupted. Check the phone's connection; it will be tried again."));
    xhr.addEventListener("error", networkError);
    xhr.addEventListener("timeout", networkError);
    xhr.addEventListener("abort", () => reject(Object.assign(new Error("Upload cancelled"), { name: "AbortError" })));
    xhr.send(blob);
  });
}

// A signed URL is not used this close to its expiry: a new one is asked for instead.
const URL_MARGIN_MS = 10_000;

/** Resolves when the browser says it is online (at once if it is), or when `signal` aborts. */
export function whenOnline(signal) {
  if (navigator.onLine || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      window.removeEventListener("online", done);
      signal?.removeEventListener("abort", done);
      clearInterval(poll);
      resolve();
    };
    // `online` is the signal; the poll covers browsers that miss firing it after a sleep.
    const poll = setInterval(() => { if (navigator.onLine) done(); }, 3000);
    window.addEventListener("online", done);
    signal?.addEventListener("abort", done);
  });
}

/**
 * Run `fn()` until it succeeds: up to three attempts with back-off (600 ms, 1.2 s, plus jitter) while the
 * error is retryable (ApiError.retryable); while the phone is offline, wait for the network without spending
 * an attempt. The rule is upload-retry.js. Throws the last error, or an AbortError when `signal` aborts.
 */
export async function persist(fn, { signal, onRetry, onWaiting } = {}) {
  let failures = 0;
  for (;;) {
    if (!navigator.onLine) {
      onWaiting?.(true);
      await whenOnline(signal);
      onWaiting?.(false);
    }
    if (signal?.aborted) throw Object.assign(new Error("Upload cancelled"), { name: "AbortError" });
    try {
      return await fn();
    } catch (err) {
      const retryable = err?.name !== "AbortError" && err instanceof ApiError && err.retryable;
      const next = afterFailure({ retryable, online: navigator.onLine, failures });
      if (next.action === "throw") throw err;
      failures = next.failures;
      if (next.action === "wait-online") continue; // the network went: wait for it (top of the loop)
      onRetry?.(err, failures, next.delayMs);
      await sleep(next.delayMs);
    }
  }
}

/** The image metadata to register with a photo: only the fields set (DESIGN.md, "An image"). */
export function registrationMetadata(metadata = {}) {
  const out = {};
  for (const key of ["bodySite", "laterality", "view", "label", "notes"]) {
    const value = typeof metadata[key] === "string" ? metadata[key].trim() : metadata[key];
    if (value) out[key] = value;
  }
  return out;
}

/**
 * Upload one photo and register it with the capture session.
 * @param {string} sessionId
 * @param {{blob: Blob, filename?: string, capturedAt?: string, metadata?: object}} photo
 * @param {{onStage?: (stage: "uploading"|"registering") => void, onProgress?: (f: number) => void,
 *   onRetry?: (err: ApiError, attempt: number) => void, onWaiting?: (offline: boolean) => void,
 *   onTarget?: (imageId: string) => void, signal?: AbortSignal}} hooks
 *   onTarget is told the server's image id as soon as it exists (so a reload can tell a photo already
 *   registered from one that is not).
 * @returns {Promise<object>} the registered image (server shape)
 */
export async function uploadPhoto(sessionId, photo, { onStage, onProgress, onRetry, onWaiting, onTarget, signal } = {}) {
  const { blob } = photo;
  const retry = { signal, onRetry, onWaiting };
  onStage?.("uploading");
  onProgress?.(0);
  const presign = () => persist(() => api.presignUpload(sessionId, {
    contentType: blob.type || "image/jpeg",
    sizeBytes: blob.size,
    filename: photo.filename || undefined,
  }), retry);
  let target = await presign();
  onTarget?.(target.imageId);

  await persist(async () => {
    // After a long wait offline the signed URL may have run out: ask for a new one (a new image id).
    if (target.expiresAt && Date.parse(target.expiresAt) - Date.now() < URL_MARGIN_MS) {
      target = await api.presignUpload(sessionId, {
        contentType: blob.type || "image/jpeg", sizeBytes: blob.size, filename: photo.filename || undefined,
      });
      onTarget?.(target.imageId);
    }
    return putBlob(target, blob, onProgress, { signal });
  }, retry);

  onStage?.("registering");
  const metadata = registrationMetadata(photo.metadata);
  const body = { imageId: target.imageId, capturedAt: photo.capturedAt };
  if (Object.keys(metadata).length) body.metadata = metadata;
  let lostResponse = false;
  return persist(async () => {
    try {
      return await api.registerImage(sessionId, body);
    } catch (err) {
      // A registration whose response was lost may have worked: a retry then conflicts; ask for the image.
      if (lostResponse && err instanceof ApiError && err.status === 409) {
        return api.getImage(sessionId, target.imageId);
      }
      if (err instanceof ApiError && err.status === 0) lostResponse = true;
      throw err;
    }
  }, retry);
}

/** Run `task(item)` over `items`, `concurrency` at a time; resolves when all have settled. */
export async function runPool(items, concurrency, task) {
  const queue = [...items];
  const runners = Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
    while (queue.length) {
      const item = queue.shift();
      try { await task(item); } catch { /* the task records its own failure */ }
    }
  });
  await Promise.all(runners);
}

// Upload one prepared photo: presign → PUT the bytes to the signed URL (with progress) → register.
// Each step is tried three times with exponential back-off; errors that retrying cannot fix (session full,
// not an image, too large) fail at once with the server's explanation. A pool runs a few photos at a time
// so one failed photo never stops the others.

import { ApiError, api, withRetry } from "./api.js";

// Headers a page may not set on XMLHttpRequest (the browser sets them itself).
const FORBIDDEN_HEADERS = new Set(["content-length", "host", "connection", "accept-encoding", "cookie", "origin", "referer"]);

/**
 * PUT `blob` to a signed upload URL with exactly the headers the server gave.
 * @param {{uploadUrl: string, method?: string, headers?: object}} target from POST …/uploads
 * @param {(fraction: number) => void} onProgress 0…1 as bytes leave the phone
 */
export function putBlob(target, blob, onProgress, { timeoutMs = 120_000 } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
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

/**
 * Upload one photo and register it with the capture session.
 * @param {string} sessionId
 * @param {{blob: Blob, filename?: string, capturedAt?: string, label?: string}} photo
 * @param {{onStage?: (stage: "uploading"|"registering") => void, onProgress?: (f: number) => void,
 *   onRetry?: (err: ApiError, attempt: number) => void}} hooks
 * @returns {Promise<object>} the registered image (server shape)
 */
export async function uploadPhoto(sessionId, photo, { onStage, onProgress, onRetry } = {}) {
  const { blob } = photo;
  onStage?.("uploading");
  onProgress?.(0);
  const target = await withRetry(() => api.presignUpload(sessionId, {
    contentType: blob.type || "image/jpeg",
    sizeBytes: blob.size,
    filename: photo.filename || undefined,
  }), { onRetry });

  await withRetry(() => putBlob(target, blob, onProgress), { onRetry });

  onStage?.("registering");
  const metadata = {};
  if (photo.label?.trim()) metadata.label = photo.label.trim();
  const body = { imageId: target.imageId, capturedAt: photo.capturedAt };
  if (Object.keys(metadata).length) body.metadata = metadata;
  let lostResponse = false;
  return withRetry(async () => {
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
  }, { onRetry });
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

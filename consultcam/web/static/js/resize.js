// Main-thread side of the resize worker: resizePhoto(blob) → Promise of a small, upright, EXIF-free JPEG, and
// a second promise for the quick blur/exposure check that the worker finishes just after.

let worker = null;
let nextId = 1;
const pending = new Map(); // id → {resolve, reject, resolveCheck}

function getWorker() {
  if (worker) return worker;
  worker = new Worker(new URL("./resize-worker.js", import.meta.url), { type: "module", name: "consultcam-resize" });
  worker.addEventListener("message", (event) => {
    const { id, ok, check, ...result } = event.data;
    const job = pending.get(id);
    if (!job) return;
    if ("check" in event.data && ok === undefined) {
      pending.delete(id);
      job.resolveCheck(check ?? null);
    } else if (ok) {
      job.resolve({ ...result, check: job.check });
    } else {
      pending.delete(id);
      job.resolveCheck(null);
      job.reject(Object.assign(new Error(result.message), { name: result.name }));
    }
  });
  worker.addEventListener("error", (event) => {
    const error = new Error(event.message || "The photo resizer stopped.");
    for (const job of pending.values()) {
      job.resolveCheck(null);
      job.reject(error);
    }
    pending.clear();
    worker?.terminate();
    worker = null;
  });
  return worker;
}

/**
 * Resize a photo in the worker.
 * @param {Blob|ImageBitmap} source a camera or file blob (any orientation), or a frame already decoded
 * @param {{maxEdgePx: number, maxBytes: number}} limits long edge in pixels and encoded size in bytes
 * @returns {Promise<{blob: Blob, width: number, height: number, quality: number, attempts: number,
 *   decodeMs: number, totalMs: number, sourceWidth: number, sourceHeight: number,
 *   check: Promise<{sharpness: number, meanLuma: number, underexposed: number, overexposed: number,
 *   warnings: string[], ms: number} | null>}>}
 *   rejects with name "EncodingError"/"InvalidStateError" when the browser cannot decode the file (e.g. HEIC).
 *   `check` (quality-check.js) resolves a moment later; null when it could not run. It never rejects.
 */
export function resizePhoto(source, { maxEdgePx = 2048, maxBytes = 1024 * 1024 } = {}) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const job = { resolve, reject };
    job.check = new Promise((resolveCheck) => { job.resolveCheck = resolveCheck; });
    pending.set(id, job);
    const transfer = typeof ImageBitmap !== "undefined" && source instanceof ImageBitmap ? [source] : [];
    getWorker().postMessage({ id, source, maxEdgePx, maxBytes }, transfer);
  });
}

/** Stop the worker and drop anything it holds (session over). */
export function terminateResizer() {
  for (const job of pending.values()) {
    job.resolveCheck(null);
    job.reject(Object.assign(new Error("Stopped"), { name: "AbortError" }));
  }
  pending.clear();
  worker?.terminate();
  worker = null;
}

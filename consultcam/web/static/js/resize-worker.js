// Web Worker: decode a photo with its EXIF orientation applied, scale it to a long edge ≤ maxEdgePx and
// encode a JPEG ≤ maxBytes, off the main thread. The output carries no EXIF at all (no GPS, no camera
// serial): canvas encoders write none, so the location never leaves the phone.
//
// Size budget: step the JPEG quality down first (cheap, keeps resolution), then scale down and try again.
// Message in: {id, source: Blob | ImageBitmap, maxEdgePx, maxBytes}; out: {id, ok, blob, width, height,
// quality, attempts, decodeMs, totalMs, sourceWidth, sourceHeight} or {id, ok: false, name, message}.

const QUALITIES = [0.9, 0.84, 0.78, 0.72, 0.66, 0.6];
const SCALE_STEP = 0.82;
const MIN_LONG_EDGE = 480;

/** Resize one photo. Exported through the message protocol; see resize.js for the main-thread API. */
async function resizeImage(source, { maxEdgePx = 2048, maxBytes = 1024 * 1024 } = {}) {
  const started = performance.now();
  const bitmap = source instanceof Blob
    ? await createImageBitmap(source, { imageOrientation: "from-image" })
    : source;
  const decodeMs = performance.now() - started;
  const { width: sourceWidth, height: sourceHeight } = bitmap;
  let scale = Math.min(1, maxEdgePx / Math.max(sourceWidth, sourceHeight));
  let attempts = 0;
  try {
    for (;;) {
      const width = Math.max(1, Math.round(sourceWidth * scale));
      const height = Math.max(1, Math.round(sourceHeight * scale));
      const canvas = new OffscreenCanvas(width, height);
      const ctx = canvas.getContext("2d", { alpha: false });
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(bitmap, 0, 0, width, height);
      let index = 0;
      while (index < QUALITIES.length) {
        const quality = QUALITIES[index];
        attempts += 1;
        const blob = await canvas.convertToBlob({ type: "image/jpeg", quality });
        if (blob.size <= maxBytes) {
          return {
            blob, width, height, quality, attempts, decodeMs,
            totalMs: performance.now() - started, sourceWidth, sourceHeight,
          };
        }
        // Far over budget: skip a quality step rather than encode every one.
        index += blob.size > maxBytes * 1.6 ? 2 : 1;
      }
      if (Math.max(width, height) <= MIN_LONG_EDGE) {
        throw Object.assign(new Error("The photo could not be made small enough to upload."), { name: "TooLarge" });
      }
      scale *= SCALE_STEP;
    }
  } finally {
    bitmap.close();
  }
}

self.addEventListener("message", async (event) => {
  const { id, source, maxEdgePx, maxBytes } = event.data;
  try {
    const result = await resizeImage(source, { maxEdgePx, maxBytes });
    self.postMessage({ id, ok: true, ...result });
  } catch (err) {
    self.postMessage({ id, ok: false, name: err?.name || "Error", message: err?.message || String(err) });
  }
});

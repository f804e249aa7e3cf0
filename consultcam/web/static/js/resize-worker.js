// Web Worker: decode a photo with its EXIF orientation applied, scale it to a long edge ≤ maxEdgePx and
// encode a JPEG ≤ maxBytes, off the main thread. The output carries no EXIF at all (no GPS, no camera
// serial): canvas encoders write none, so the location never leaves the phone. It is upright (drawn with the
// orientation applied) and sRGB (a 2D canvas is sRGB; Chromium tags the JPEG with an sRGB profile), within
// the server's edge cap: conforming by construction, so the server stores it without re-encoding it
// (issue 15; tests/e2e/test_phone_jpeg_kept.py).
//
// Size budget: step the JPEG quality down first (cheap, keeps resolution), then scale down and try again.
// While the photo is decoded anyway, the quick blur and exposure check (quality-check.js) runs on the pixels
// at upload size, so the camera screen can offer a retake at once. It runs after the JPEG has been sent back,
// so it never delays an upload.
// Message in: {id, source: Blob | ImageBitmap, maxEdgePx, maxBytes}; out: {id, ok, blob, width, height,
// quality, attempts, decodeMs, totalMs, sourceWidth, sourceHeight} or {id, ok: false, name, message}, then
// {id, check: {sharpness, meanLuma, underexposed, overexposed, warnings, ms} | null}.

import { assessPixels } from "./quality-check.js";

const QUALITIES = [0.9, 0.84, 0.78, 0.72, 0.66, 0.6];
const SCALE_STEP = 0.82;
const MIN_LONG_EDGE = 480;

/**
 * Resize one photo. Exported through the message protocol; see resize.js for the main-thread API.
 * Returns the result and `firstDrawing`: the 2D context of the upload-size drawing, for the quick check.
 */
async function resizeImage(source, { maxEdgePx = 2048, maxBytes = 1024 * 1024 } = {}) {
  const started = performance.now();
  const bitmap = source instanceof Blob
    ? await createImageBitmap(source, { imageOrientation: "from-image" })
    : source;
  const decodeMs = performance.now() - started;
  const { width: sourceWidth, height: sourceHeight } = bitmap;
  let scale = Math.min(1, maxEdgePx / Math.max(sourceWidth, sourceHeight));
  let attempts = 0;
  let firstDrawing = null;
  try {
    for (;;) {
      const width = Math.max(1, Math.round(sourceWidth * scale));
      const height = Math.max(1, Math.round(sourceHeight * scale));
      const canvas = new OffscreenCanvas(width, height);
      const ctx = canvas.getContext("2d", { alpha: false });
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(bitmap, 0, 0, width, height);
      firstDrawing ??= { ctx, width, height };
      let index = 0;
      while (index < QUALITIES.length) {
        const quality = QUALITIES[index];
        attempts += 1;
        const blob = await canvas.convertToBlob({ type: "image/jpeg", quality });
        if (blob.size <= maxBytes) {
          const result = {
            blob, width, height, quality, attempts, decodeMs,
            totalMs: performance.now() - started, sourceWidth, sourceHeight,
          };
          return { result, firstDrawing };
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

/** The quick check on the first (upload-size) drawing; null if the pixels cannot be read. */
function quickCheck({ ctx, width, height }) {
  const started = performance.now();
  try {
    const { data } = ctx.getImageData(0, 0, width, height);
    return { ...assessPixels(data, width, height), ms: Math.round(performance.now() - started) };
  } catch {
    return null; // a hint only: never fail the photo because of it
  }
}

self.addEventListener("message", async (event) => {
  const { id, source, maxEdgePx, maxBytes } = event.data;
  try {
    const { result, firstDrawing } = await resizeImage(source, { maxEdgePx, maxBytes });
    self.postMessage({ id, ok: true, ...result });
    self.postMessage({ id, check: quickCheck(firstDrawing) });
  } catch (err) {
    self.postMessage({ id, ok: false, name: err?.name || "Error", message: err?.message || String(err) });
  }
});

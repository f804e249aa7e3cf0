// Evaluated in the phone page by capture_latency.py: resize one photo with ours and with
// browser-image-compression, timing each; returns times, sizes and both outputs as base64.
async ({ b64, oursFirst, edge, bytes, lib }) => {
  const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const blob = new Blob([raw], { type: "image/jpeg" });
  const file = new File([blob], "photo.jpg", { type: "image/jpeg", lastModified: Date.now() });
  const toB64 = async (b) => {
    const buf = new Uint8Array(await b.arrayBuffer());
    let s = "";
    for (let i = 0; i < buf.length; i += 0x8000) s += String.fromCharCode(...buf.subarray(i, i + 0x8000));
    return btoa(s);
  };
  const ours = async () => {
    const t0 = performance.now();
    const r = await window.__consultcam.resizePhoto(blob, { maxEdgePx: edge, maxBytes: bytes });
    return { ms: performance.now() - t0, blob: r.blob, workerMs: r.totalMs, decodeMs: r.decodeMs, attempts: r.attempts };
  };
  const theirs = async () => {
    const t0 = performance.now();
    const out = await imageCompression(file, {
      maxSizeMB: bytes / 1048576, maxWidthOrHeight: edge, useWebWorker: true, fileType: "image/jpeg",
      libURL: location.origin + lib,
    });
    return { ms: performance.now() - t0, blob: out };
  };
  const first = oursFirst ? await ours() : null;
  const b = await theirs();
  const a = first ?? (await ours());
  return {
    ours: { ms: a.ms, workerMs: a.workerMs, decodeMs: a.decodeMs, attempts: a.attempts, size: a.blob.size, b64: await toB64(a.blob) },
    theirs: { ms: b.ms, size: b.blob.size, b64: await toB64(b.blob) },
  };
}

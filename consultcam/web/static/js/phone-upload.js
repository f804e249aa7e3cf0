// The phone's upload loop: "Upload all" sends every photo not yet sent, UPLOAD_CONCURRENCY at a time, and
// Retry sends one again. Each photo goes through upload-queue.js (presign, PUT, register, with retries and
// waiting offline); once registered its IndexedDB copy and its bytes are dropped at once (the desktop has it
// now). A failure that says the session changed (signed out, ended, consent now needed) is followed up; when
// the batch is over with nothing left on the phone, the "sent" screen follows.

import { ApiError } from "./api.js";
import { announce } from "./dom.js";
import { plural } from "./format.js";
import { uploadBatch } from "./phone-model.js";
import { releasePhoto } from "./phone-photos.js";
import { runPool, uploadPhoto } from "./upload-queue.js";

const UPLOAD_CONCURRENCY = 2;

/**
 * @param {{state: object, grid: import("./review.js").ReviewGrid, timings: object[], render(): void,
 *   renderOverall(): void, renderNet(): void, showScreen(name: string): void, showDone(): void,
 *   refreshSession(): void}} parts
 *   timings: one {imageId, uploadStart, registered, bytes} per upload (wall-clock ms), for
 *   bench/capture_latency.py
 * @returns {{uploadAll(): Promise<void>, retryPhoto(photo): Promise<void>}}
 */
export function createUploader({ state, grid, timings, render, renderOverall, renderNet, showScreen, showDone, refreshSession }) {
  async function uploadAll() {
    if (state.uploading || state.ended) return;
    const batch = uploadBatch(state);
    if (!batch.length) return;
    state.uploading = true;
    state.refusedNote = null;
    for (const photo of batch) {
      photo.status = "queued";
      photo.error = null;
      photo.progress = 0;
      photo.queued = true;
      state.store?.update(photo); // a reload now resumes the upload
    }
    if (state.screen !== "review") showScreen("review");
    render();
    await runPool(batch, UPLOAD_CONCURRENCY, uploadOne);
    state.uploading = false;
    afterUploads();
  }

  async function retryPhoto(photo) {
    if (!photo.blob) return;
    photo.status = "queued";
    photo.error = null;
    photo.queued = true;
    state.store?.update(photo);
    render();
    await uploadOne(photo);
    if (!state.uploading) afterUploads();
  }

  async function uploadOne(photo) {
    await photo.ready;
    if (!state.photos.includes(photo) || state.ended) return;
    if (!photo.blob) {
      photo.status = "failed";
      photo.error = photo.error || "This photo could not be prepared.";
      grid.update(photo);
      return;
    }
    const uploadStart = performance.timeOrigin + performance.now();
    const update = () => { grid.update(photo); renderOverall(); };
    try {
      const image = await uploadPhoto(state.session.id, photo, {
        signal: state.abort.signal,
        onStage: (stage) => { photo.status = stage; photo.retrying = false; update(); },
        onProgress: (fraction) => { photo.progress = fraction; update(); },
        onRetry: () => { photo.retrying = true; update(); },
        onWaiting: (offline) => { photo.waiting = offline; update(); renderNet(); },
        onTarget: (imageId) => { photo.imageId = imageId; state.store?.update(photo); },
      });
      photo.status = "done";
      photo.retrying = false;
      timings.push({ imageId: image.id, uploadStart, registered: performance.timeOrigin + performance.now(), bytes: photo.blob.size });
      state.serverImages.add(image.id);
      state.sentCount += 1;
      state.store?.remove(photo.id);
      releasePhoto(photo); // the desktop has it now; the phone keeps nothing
    } catch (err) {
      if (err?.name === "AbortError" || state.ended) return;
      photo.status = "failed";
      photo.retrying = false;
      photo.waiting = false;
      photo.queued = false;
      state.store?.update(photo);
      photo.error = err instanceof ApiError ? err.detail : "The upload failed.";
      handleUploadError(err, photo);
    }
    grid.update(photo);
    render();
  }

  /** Errors that say the session changed: find out how, and show the matching screen. */
  function handleUploadError(err, photo) {
    if (!(err instanceof ApiError)) return;
    if (err.status === 401 || err.status === 404 || err.name === "SessionClosed" || err.name === "SessionExpired") {
      refreshSession();
    } else if (err.name === "ConsentRequired") {
      photo.status = "ready";
      photo.error = null;
      state.session.consent = null;
      state.settings.consentRequired = true;
      showScreen("consent");
    }
  }

  function afterUploads() {
    if (state.ended) return;
    const failed = state.photos.filter((p) => p.status === "failed");
    state.photos = state.photos.filter((p) => p.status !== "done");
    if (state.screen === "consent") return render();
    if (!failed.length && !state.photos.length) {
      showDone();
    } else {
      render();
      if (failed.length) announce(`${plural(failed.length, "photo")} could not be sent. Tap Retry on each.`);
    }
  }

  return { uploadAll, retryPhoto };
}

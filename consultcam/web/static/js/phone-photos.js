// The phone's photos from capture to review: a camera still or a picked file becomes a photo (a retake
// replaces one in place), is resized in the worker straight away (the original is dropped; a file the browser
// cannot decode, such as HEIC on most Android browsers, is sent as it is if the server accepts it), is kept in
// IndexedDB until it is uploaded, and can be opened for details or deleted. Photos kept from before a reload
// come back here too. Each photo is shown from an object URL that is revoked as soon as it is sent or deleted.

import { announce } from "./dom.js";
import { editablePhotos, newPhoto, refusedFilesNote, remainingCapacity } from "./phone-model.js";
import { resizePhoto } from "./resize.js";

const CHECK_WAIT_MS = 1500; // how long "ready" waits for the quick quality check

/** Let go of a photo's bytes: revoke its object URL and drop its blob (sent, deleted, or the session over). */
export function releasePhoto(photo) {
  if (photo.url) URL.revokeObjectURL(photo.url);
  photo.url = null;
  photo.blob = null;
}

/**
 * @param {{state: object, els: object, camera: import("./camera.js").Camera,
 *   viewfinder: import("./viewfinder.js").Viewfinder, grid: import("./review.js").ReviewGrid,
 *   details: import("./photo-details.js").PhotoDetails, render(): void,
 *   showScreen(name: string): void}} parts
 */
export function createPhotos({ state, els, camera, viewfinder, grid, details, render, showScreen }) {
  /** The shutter: take a still, add it, and offer a retake once its quick check is in. */
  async function onShutter() {
    if (!camera.active || state.ended) return;
    if (!state.retake && remainingCapacity(state) <= 0) return render();
    els.shutter.disabled = true;
    viewfinder.hideQuality();
    viewfinder.flash();
    try {
      const still = await camera.capture();
      const photo = addPhoto(still, { capturedAt: new Date().toISOString() });
      photo.ready.then(() => {
        if (state.screen === "capture" && state.photos.includes(photo)) viewfinder.offerRetake(photo, state.photos.indexOf(photo) + 1);
      });
    } catch (err) {
      announce(err?.message || "The photo could not be taken.");
    } finally {
      els.shutter.disabled = false;
      render();
    }
  }

  /** Add a camera still or a picked file; with a retake pending it replaces that photo in place. */
  function addPhoto(source, options) {
    let photo;
    const retakeOf = state.retake && state.photos.find((p) => p.id === state.retake.id);
    const from = state.retake?.from;
    state.retake = null;
    if (retakeOf) {
      releasePhoto(retakeOf);
      Object.assign(retakeOf, newPhoto(state, options), { id: retakeOf.id, seq: retakeOf.seq, metadata: retakeOf.metadata });
      photo = retakeOf;
    } else {
      photo = newPhoto(state, options);
      state.photos.push(photo);
    }
    photo.ready = preparePhoto(photo, source);
    announce(retakeOf ? `Photo ${state.photos.indexOf(photo) + 1} retaken.` : `Photo ${state.photos.indexOf(photo) + 1} taken.`);
    render();
    if (retakeOf && from === "review") showScreen("review");
    return photo;
  }

  /** Resize `source` into `photo` (or fall back to the original), then keep it in IndexedDB. */
  async function preparePhoto(photo, source) {
    const { maxEdgePx, maxBytes, maxUploadBytes, acceptedTypes } = state.settings;
    try {
      const result = await resizePhoto(source, { maxEdgePx, maxBytes });
      if (!state.photos.includes(photo)) return;
      photo.blob = result.blob;
      photo.width = result.width;
      photo.height = result.height;
      photo.url = URL.createObjectURL(result.blob);
      // The check follows the JPEG by a few tens of milliseconds: wait for it, so the card does not change
      // shape just after it appears.
      photo.check = await Promise.race([result.check, new Promise((r) => setTimeout(() => r(null), CHECK_WAIT_MS))]);
      if (photo.status === "preparing") photo.status = "ready";
    } catch (err) {
      if (!state.photos.includes(photo) || err?.name === "AbortError") return;
      // The browser cannot decode it (HEIC on most Android browsers): send the original, which the server
      // converts and strips, if it is a type and size the server accepts.
      const accepted = source instanceof Blob && acceptedTypes.includes(source.type) && source.size <= maxUploadBytes;
      if (accepted) {
        photo.blob = source;
        if (photo.status === "preparing") photo.status = "ready";
      } else {
        photo.status = "failed";
        photo.error = source instanceof Blob && source.size > maxUploadBytes
          ? "This file is too large to send. Take the photo with the camera here instead."
          : "This file could not be read as a photo.";
      }
    } finally {
      if (photo.blob && state.photos.includes(photo) && !state.ended) await state.store?.save(photo);
      grid.update(photo);
      render();
    }
  }

  function deletePhoto(photo) {
    releasePhoto(photo);
    state.store?.remove(photo.id);
    state.photos = state.photos.filter((p) => p !== photo);
    announce("Photo deleted.");
    render();
    if (!state.photos.length) showScreen("capture");
  }

  /** Files from the picker: the first replaces a pending retake; the rest are added while the session has room. */
  function onFilesChosen(fileList) {
    const files = [...fileList];
    els.fileInput.value = "";
    if (!files.length) return;
    if (state.retake) {
      state.retake.from = "review";
      addPhoto(files.shift(), { capturedAt: new Date().toISOString() });
    }
    const room = Math.max(0, remainingCapacity(state));
    const accepted = files.slice(0, room);
    for (const file of accepted) {
      addPhoto(file, { filename: file.name, capturedAt: new Date(file.lastModified || Date.now()).toISOString() });
    }
    const left = files.length - accepted.length;
    if (left > 0) state.refusedNote = refusedFilesNote(state.settings.maxImages, left);
    showScreen("review");
  }

  function openDetails(photo) {
    if (!editablePhotos(state).includes(photo)) return;
    showScreen("details");
    details.open(photo);
  }

  /**
   * Photos kept in IndexedDB from before a reload: back in the grid; those the server registered are dropped.
   * @returns {Promise<object[]>} the photos restored
   */
  async function restorePhotos() {
    if (!state.store) return [];
    const records = await state.store.load();
    const restored = [];
    for (const record of records) {
      if (record.imageId && state.serverImages.has(record.imageId)) {
        state.store.remove(record.id); // its upload was registered just before the reload
        continue;
      }
      const photo = {
        ...newPhoto(state, { capturedAt: record.capturedAt, filename: record.filename }),
        id: record.id, seq: record.seq, status: "ready", blob: record.blob, url: URL.createObjectURL(record.blob),
        width: record.width, height: record.height, metadata: record.metadata || {}, check: record.check,
        queued: record.queued, imageId: null,
      };
      photo.ready = Promise.resolve();
      state.photos.push(photo);
      restored.push(photo);
    }
    state.seq = Math.max(state.seq, ...state.photos.map((p) => p.seq));
    return restored;
  }

  return { onShutter, addPhoto, deletePhoto, onFilesChosen, openDetails, restorePhotos };
}

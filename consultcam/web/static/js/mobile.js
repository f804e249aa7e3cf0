// The phone page (/m/{token}): pair, consent, capture, review and details, upload, commit, and the final
// screens. This module only builds the page's parts and wires them together; each concern is its own module:
//   phone-model.js    the state and the pure rules over it (what is pending, capacity, button words)
//   phone-screens.js  which screen shows, and the words of the message screens
//   phone-render.js   the counters, buttons, notes and strips drawn from the state
//   phone-photos.js   capture and review: photos from the camera or files, resized, kept, deleted
//   phone-upload.js   the upload loop ("Upload all", Retry) and what a failed upload means
//   phone-events.js   the session's event stream: images, consent, commit progress, the endings
//   phone-session.js  pairing, the first screen, and the end of the session on this phone
//
// Photos are resized in a worker straight after capture (the 12 MP original is dropped at once) and shown
// from object URLs that are revoked as soon as the photo is uploaded or deleted. Nothing goes to the camera
// roll or a cache. Until a photo is uploaded its resized JPEG and details are also kept in IndexedDB
// (photo-store.js, keyed by session id) so that a reload or a killed tab does not lose it; that copy is
// deleted when the upload is registered, and every copy of the session is wiped on commit, session end or
// expiry, "Not this patient?" and sign-out. No service worker.

import { Camera } from "./camera.js";
import { ConsentForm } from "./consent.js";
import { $, announce, readPageData } from "./dom.js";
import { missingFields, summarise } from "./metadata-chips.js";
import { PhoneCommit } from "./phone-commit.js";
import { createEventHandling } from "./phone-events.js";
import { createState, editablePhotos, pendingPhotos } from "./phone-model.js";
import { createPhotos } from "./phone-photos.js";
import { createRenderer, findElements } from "./phone-render.js";
import { createScreens } from "./phone-screens.js";
import { createSessionFlow } from "./phone-session.js";
import { createUploader } from "./phone-upload.js";
import { PhotoDetails } from "./photo-details.js";
import { resizePhoto } from "./resize.js";
import { ReviewGrid } from "./review.js";
import { Viewfinder } from "./viewfinder.js";
import { WrongPatientDialog } from "./wrong-patient.js";

const page = readPageData();
const timings = []; // per upload, wall-clock ms: for bench/capture_latency.py
const state = createState(page.config);
const els = findElements();

// The parts call each other through these late-bound names (each is set below), so none imports another's
// state; every hook reads the current state when it runs.
let screens, view, photos, uploads, events, session;

const camera = new Camera($("#preview"));
const viewfinder = new Viewfinder(camera, {
  canRun: () => state.screen === "capture" && !state.ended && !wrongPatient.open,
  onPickFiles: () => els.fileInput.click(),
  onRetake: (photoId) => { state.retake = { id: photoId, from: "camera" }; view.render(); els.shutter.focus(); },
  onChange: () => view.render(),
});
const wrongPatient = new WrongPatientDialog({
  session: () => state.session,
  unsent: () => pendingPhotos(state).length,
  onOpen: () => viewfinder.stop(),
  onClose: () => { if (!state.ended && state.screen === "capture") viewfinder.start(); },
  beforeSignOut: () => state.abort.abort(),
  onConfirmed: ({ notified }) => session.finish("wrong-patient", null, { notified }),
});
const grid = new ReviewGrid($("#photo-grid"), {
  onDetails: (photo) => photos.openDetails(photo),
  onDelete: (photo) => photos.deletePhoto(photo),
  onRetake: (photo) => { state.retake = { id: photo.id, from: "review" }; screens.showScreen("capture"); },
  onRetry: (photo) => uploads.retryPhoto(photo),
  describe: (photo) => summarise(photo.metadata, state.terminology),
  missing: (photo) => missingFields(photo, state.settings.requiredMetadata),
});
const details = new PhotoDetails({
  photos: () => editablePhotos(state),
  position: (photo) => state.photos.indexOf(photo) + 1,
  required: [],
  onChange: (photo) => { state.store?.update(photo); grid.update(photo); },
  onClose: () => screens.showScreen("review"),
});
const consentForm = new ConsentForm({
  onRecorded: (consent) => {
    state.session.consent = consent;
    announce("Consent recorded.");
    screens.showScreen(state.photos.length ? "review" : "capture");
  },
  onSessionGone: () => events.refreshSession(),
});
const phoneCommit = new PhoneCommit({
  session: () => state.session,
  required: () => state.settings.requiredMetadata || [],
  onCommitted: () => session.finish("committed"),
  onSessionGone: () => events.refreshSession(),
});

view = createRenderer({ state, els, camera, grid });
const { render, renderOverall, renderNet } = view;
screens = createScreens({ state, els, viewfinder, details, consentForm, render });
const { showScreen } = screens;
photos = createPhotos({ state, els, camera, viewfinder, grid, details, render, showScreen });
events = createEventHandling({
  state, phoneCommit, render, showScreen, finish: (...args) => session.finish(...args),
});
uploads = createUploader({
  state, grid, timings, render, renderOverall, renderNet, showScreen, showDone: screens.showDone,
  refreshSession: () => events.refreshSession(),
});
session = createSessionFlow({
  state, els, token: page.token, camera, grid, details, phoneCommit, wrongPatient, screens, render,
  startEvents: events.startEvents, restorePhotos: photos.restorePhotos, uploadAll: uploads.uploadAll,
});

// ---------------------------------------------------------------------------------------------- wiring

els.shutter.addEventListener("click", photos.onShutter);
els.filesBtn.addEventListener("click", () => els.fileInput.click());
els.fileInput.addEventListener("change", () => photos.onFilesChosen(els.fileInput.files));
els.reviewBtn.addEventListener("click", () => showScreen("review"));
$("#take-more-btn").addEventListener("click", () => { state.retake = null; showScreen("capture"); });
$("#done-more").addEventListener("click", () => showScreen("capture"));
$("#phone-commit").addEventListener("click", () => phoneCommit.open());
els.uploadAll.addEventListener("click", () => uploads.uploadAll());
els.wrongPatient.addEventListener("click", () => { if (!state.ended) wrongPatient.show(); });

window.addEventListener("online", () => {
  renderNet();
  if (state.session && !state.ended) announce("Back online.");
});
window.addEventListener("offline", () => {
  renderNet();
  if (state.session && !state.ended) announce("Offline. Photos are kept and will upload when the network is back.");
});
document.addEventListener("visibilitychange", () => {
  if (document.hidden) camera.stop();
  else if (state.screen === "capture" && !wrongPatient.open) viewfinder.start();
});
window.addEventListener("pagehide", () => camera.stop());
window.addEventListener("beforeunload", (event) => {
  // Photos kept in IndexedDB come back after a reload; only warn when they could not be kept.
  if (!state.ended && pendingPhotos(state).length && !state.store?.available) event.preventDefault();
});

// Hooks for automation and the benchmark (bench/capture_latency.py): no secrets, no photos.
window.__consultcam = { resizePhoto, state, events: null, timings };

session.pair();

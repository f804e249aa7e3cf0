// The phone page (/m/{token}): pair, consent, capture, review and details, upload, commit, and the final
// screens.
//
// Photos are resized in a worker straight after capture (the 12 MP original is dropped at once) and shown
// from object URLs that are revoked as soon as the photo is uploaded or deleted. Nothing goes to the camera
// roll or a cache. Until a photo is uploaded its resized JPEG and details are also kept in IndexedDB
// (photo-store.js, keyed by session id) so that a reload or a killed tab does not lose it; that copy is
// deleted when the upload is registered, and every copy of the session is wiped on commit, session end or
// expiry, "Not this patient?" and sign-out. No service worker.

import { ApiError, api } from "./api.js";
import { Camera } from "./camera.js";
import { ConsentForm, consentNeeded, describeConsent } from "./consent.js";
import { $, announce, readPageData, setText, show } from "./dom.js";
import { EventStream } from "./events.js";
import { formatBirthDateWithAge, plural, sentenceCase } from "./format.js";
import { listFields, loadTerminology, metadataGaps, missingFields, summarise } from "./metadata-chips.js";
import { describePairingError, forgetPairing, redeem } from "./pairing.js";
import { PhoneCommit } from "./phone-commit.js";
import { endingCopy } from "./phone-endings.js";
import { PhotoDetails } from "./photo-details.js";
import { PhotoStore, purgeStale, wipeSession } from "./photo-store.js";
import { resizePhoto, terminateResizer } from "./resize.js";
import { ReviewGrid } from "./review.js";
import { runPool, uploadPhoto } from "./upload-queue.js";
import { Viewfinder } from "./viewfinder.js";
import { WrongPatientDialog } from "./wrong-patient.js";

const page = readPageData();
const timings = []; // per upload, wall-clock ms: for bench/capture_latency.py
const UPLOAD_CONCURRENCY = 2;
const CHECK_WAIT_MS = 1500; // how long "ready" waits for the quick quality check

const state = {
  screen: "pairing",
  session: null,
  settings: {
    maxEdgePx: 2048, maxBytes: 1024 * 1024, maxUploadBytes: 10 * 1024 * 1024,
    acceptedTypes: ["image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"],
    maxImages: page.config?.maxImages ?? 50, warnImages: page.config?.warnImages ?? 20,
    consentRequired: false, requiredMetadata: [], phoneCanCommit: false,
  },
  // {id, seq, status, blob, url, width, height, capturedAt, metadata, check, filename, progress, error, ready,
  //  queued, waiting, imageId}
  photos: [],
  serverImages: new Set(),
  uploading: false,
  retake: null, // {id, from: "camera" | "review"}
  sentCount: 0,
  events: null,
  ended: false,
  store: null,
  seq: Date.now(),
  abort: new AbortController(),
  terminology: null, // body sites, sides and views, for the words on the review cards
};

const els = {
  banner: $("#patient-banner"),
  wrongPatient: $("#wrong-patient"),
  pbState: $("#pb-state"),
  netNote: $("#net-note"),
  viewfinder: $("#viewfinder"),
  shutter: $("#shutter"),
  filesBtn: $("#files-btn"),
  fileInput: $("#file-input"),
  reviewBtn: $("#review-btn"),
  reviewBtnText: $("#review-btn-text"),
  lastThumb: $("#last-thumb"),
  photoCount: $("#photo-count"),
  retakeChip: $("#retake-chip"),
  captureCapacity: $("#capture-capacity"),
  reviewCapacity: $("#review-capacity"),
  reviewEmpty: $("#review-empty"),
  restoredNote: $("#restored-note"),
  actionBar: $("#action-bar"),
  uploadAll: $("#upload-all"),
  uploadAllText: $("#upload-all-text"),
  requiredHint: $("#required-hint"),
  overall: $("#overall"),
  overallText: $("#overall-text"),
  overallPct: $("#overall-pct"),
  overallProgress: $("#overall-progress"),
};

const camera = new Camera($("#preview"));
const viewfinder = new Viewfinder(camera, {
  canRun: () => state.screen === "capture" && !state.ended && !wrongPatient.open,
  onPickFiles: () => els.fileInput.click(),
  onRetake: (photoId) => { state.retake = { id: photoId, from: "camera" }; render(); els.shutter.focus(); },
  onChange: () => render(),
});
const wrongPatient = new WrongPatientDialog({
  session: () => state.session,
  unsent: () => pendingPhotos().length,
  onOpen: () => viewfinder.stop(),
  onClose: () => { if (!state.ended && state.screen === "capture") viewfinder.start(); },
  beforeSignOut: () => state.abort.abort(),
  onConfirmed: ({ notified }) => finish("wrong-patient", null, { notified }),
});
const grid = new ReviewGrid($("#photo-grid"), {
  onDetails: (photo) => openDetails(photo),
  onDelete: (photo) => deletePhoto(photo),
  onRetake: (photo) => { state.retake = { id: photo.id, from: "review" }; showScreen("capture"); },
  onRetry: (photo) => retryPhoto(photo),
  describe: (photo) => summarise(photo.metadata, state.terminology),
  missing: (photo) => missingFields(photo, state.settings.requiredMetadata),
});
const details = new PhotoDetails({
  photos: () => editablePhotos(),
  position: (photo) => state.photos.indexOf(photo) + 1,
  required: [],
  onChange: (photo) => { state.store?.update(photo); grid.update(photo); },
  onClose: () => showScreen("review"),
});
const consentForm = new ConsentForm({
  onRecorded: (consent) => {
    state.session.consent = consent;
    announce("Consent recorded.");
    showScreen(state.photos.length ? "review" : "capture");
  },
  onSessionGone: () => refreshSession(),
});
const phoneCommit = new PhoneCommit({
  session: () => state.session,
  required: () => state.settings.requiredMetadata || [],
  onCommitted: () => finish("committed"),
  onSessionGone: () => refreshSession(),
});

// ---------------------------------------------------------------------------------------------- screens

const SCREENS = ["pairing", "error", "consent", "capture", "review", "details", "done", "final"];

/** Show one screen; focus moves to its heading so a screen reader starts there. */
function showScreen(name, { focus = true } = {}) {
  const previous = state.screen;
  state.screen = name;
  if (previous === "details" && name !== "details") details.clear(); // its <img> lets go of the blob
  for (const screen of SCREENS) show($(`#screen-${screen}`), screen === name);
  document.body.dataset.screen = name;
  show(els.banner, Boolean(state.session) && name !== "error" && name !== "pairing");
  if (name === "capture") viewfinder.start();
  else viewfinder.stop();
  if (name !== "capture") viewfinder.hideQuality();
  if (name !== "capture" && name !== "review" && name !== "details") state.retake = null;
  if (name === "consent") consentForm.prepare(state.session);
  render();
  if (previous !== name || name === "details") window.scrollTo({ top: 0 });
  const heading = $(`#${name}-title`);
  if (focus && heading) heading.focus({ preventScroll: true });
}

function showError({ icon = "x-circle", title, text, next, retry = null }) {
  setText($("#error-title"), title);
  setText($("#error-text"), text);
  setText($("#error-next"), next);
  $("#error-icon use").setAttribute("href", `#i-${icon}`);
  $("#error-icon").className = `message-icon message-icon-${icon === "wifi-off" || icon === "clock" ? "info" : "error"}`;
  const retryBtn = $("#error-retry");
  show(retryBtn, Boolean(retry));
  retryBtn.onclick = retry;
  showScreen("error");
}

// ---------------------------------------------------------------------------------------------- pairing

async function pair() {
  try {
    const { session, captureSettings } = await redeem(page.token);
    await onPaired(session, captureSettings);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    const copy = describePairingError(err);
    showError({ ...copy, retry: copy.retryable ? () => { showScreen("pairing"); pair(); } : null });
  }
}

async function onPaired(session, captureSettings) {
  state.session = session;
  const settings = captureSettings || {};
  Object.assign(state.settings, settings);
  // The session carries the issue-5 settings too (a resumed page has only what it stored at pairing).
  for (const key of ["consentRequired", "requiredMetadata", "phoneCanCommit"]) {
    if (settings[key] === undefined && session[key] !== undefined) state.settings[key] = session[key];
  }
  details.required = state.settings.requiredMetadata || [];
  state.serverImages = new Set((session.images || []).map((image) => image.id));
  renderBanner(session.patient || {});
  if (session.status && session.status !== "open") {
    await wipeSession(session.id);
    finish(session.status === "committed" ? "committed" : "ended", session.status);
    return;
  }
  state.store = new PhotoStore(session.id);
  purgeStale();
  startEvents();
  // Fetched now so the details screen opens at once; the review cards name sites and sides with it.
  loadTerminology().then((terminology) => { state.terminology = terminology; render(); }, () => {});
  const restored = await restorePhotos();
  if (consentNeeded(session, state.settings)) {
    showScreen("consent");
    announce(`Connected. Ask ${session.patient?.name || "the patient"} for consent before the first photo.`);
  } else if (restored.length) {
    showRestored(restored);
  } else {
    showScreen("capture");
    announce(`Connected. Taking photos for ${session.patient?.name || "the patient"}.`);
  }
}

function renderBanner(patient) {
  setText($("#pb-name"), patient.name || "Unnamed patient");
  setText($("#pb-nhi"), patient.nhi || "not recorded");
  setText($("#pb-dob"), patient.birthDate ? formatBirthDateWithAge(patient.birthDate) : "not recorded");
}

function startEvents() {
  const sessionId = state.session.id;
  state.events = new EventStream(api.eventsUrl(sessionId), {
    onEvent: handleEvent,
    onReconnected: () => refreshSession(),
    check: () => api.getSession(sessionId),
    onFatal: () => finish("revoked"),
  });
  state.events.start();
  window.__consultcam.events = state.events;
}

/** Catch up with the server (after a gap, or an error that says the session changed). */
async function refreshSession() {
  if (state.ended) return;
  try {
    const session = await api.getSession(state.session.id);
    state.serverImages = new Set((session.images || []).map((image) => image.id));
    state.session = { ...state.session, ...session };
    if (session.status === "committed") finish("committed");
    else if (session.status !== "open") finish("ended", session.status);
    else if (state.screen === "consent" && !consentNeeded(session, state.settings)) showScreen("capture");
    render();
  } catch (err) {
    if (err instanceof ApiError && [401, 403, 404].includes(err.status)) finish("revoked");
  }
}

function handleEvent(event) {
  const data = event.data || {};
  switch (event.type) {
    case "image.added":
    case "image.updated":
    case "image.analysed":
      if (data.image?.id) state.serverImages.add(data.image.id);
      break;
    case "image.deleted":
      state.serverImages.delete(data.imageId);
      break;
    case "consent.recorded":
      state.session.consent = data.consent || state.session.consent;
      if (state.screen === "consent" && state.session.consent) {
        showScreen(state.photos.length ? "review" : "capture");
        announce("Consent was recorded on the desktop.");
      }
      break;
    case "commit.progress":
      phoneCommit.progress(data);
      return;
    case "session.committed":
      finish("committed");
      return;
    case "session.expired":
      finish("ended", data.reason);
      return;
    case "phone.revoked":
      // An ended session has already said why (session.expired comes first); this is a plain sign-out.
      if (!data.phoneId || !state.session.phone?.id || data.phoneId === state.session.phone.id) {
        finish(["wrong-patient", "paired-elsewhere"].includes(data.reason) ? data.reason : "revoked");
      }
      return;
    default:
      return;
  }
  render();
}

// ---------------------------------------------------------------------------------------------- camera

async function onShutter() {
  if (!camera.active || state.ended) return;
  if (!state.retake && remainingCapacity() <= 0) return render();
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

// ---------------------------------------------------------------------------------------------- photos

function newPhoto({ capturedAt, filename }) {
  state.seq += 1;
  return {
    id: crypto.randomUUID(), seq: state.seq, status: "preparing", blob: null, url: null, width: 0, height: 0,
    capturedAt: capturedAt || new Date().toISOString(), metadata: {}, check: null, filename: filename || null,
    progress: 0, error: null, ready: null, queued: false, waiting: false, imageId: null,
  };
}

/** Add a camera still or a picked file; with a retake pending it replaces that photo in place. */
function addPhoto(source, options) {
  let photo;
  const retakeOf = state.retake && state.photos.find((p) => p.id === state.retake.id);
  const from = state.retake?.from;
  state.retake = null;
  if (retakeOf) {
    releasePhoto(retakeOf);
    Object.assign(retakeOf, newPhoto(options), { id: retakeOf.id, seq: retakeOf.seq, metadata: retakeOf.metadata });
    photo = retakeOf;
  } else {
    photo = newPhoto(options);
    state.photos.push(photo);
  }
  photo.ready = preparePhoto(photo, source);
  announce(retakeOf ? `Photo ${state.photos.indexOf(photo) + 1} retaken.` : `Photo ${state.photos.indexOf(photo) + 1} taken.`);
  render();
  if (retakeOf && from === "review") showScreen("review");
  return photo;
}

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

function releasePhoto(photo) {
  if (photo.url) URL.revokeObjectURL(photo.url);
  photo.url = null;
  photo.blob = null;
}

function deletePhoto(photo) {
  releasePhoto(photo);
  state.store?.remove(photo.id);
  state.photos = state.photos.filter((p) => p !== photo);
  announce("Photo deleted.");
  render();
  if (!state.photos.length) showScreen("capture");
}

function pendingPhotos() {
  return state.photos.filter((p) => p.status !== "done");
}

/** Photos whose details can still change (not being sent, not sent). */
function editablePhotos() {
  return state.photos.filter((p) => ["preparing", "ready", "failed"].includes(p.status));
}

function remainingCapacity() {
  return state.settings.maxImages - state.serverImages.size - pendingPhotos().length;
}

function onFilesChosen(fileList) {
  const files = [...fileList];
  els.fileInput.value = "";
  if (!files.length) return;
  if (state.retake) {
    state.retake.from = "review";
    addPhoto(files.shift(), { capturedAt: new Date().toISOString() });
  }
  const room = Math.max(0, remainingCapacity());
  const accepted = files.slice(0, room);
  for (const file of accepted) {
    addPhoto(file, { filename: file.name, capturedAt: new Date(file.lastModified || Date.now()).toISOString() });
  }
  const left = files.length - accepted.length;
  if (left > 0) {
    state.refusedNote = `The session can hold ${state.settings.maxImages} photos, so ${plural(left, "photo")} ${left === 1 ? "was" : "were"} not added.`;
  }
  showScreen("review");
}

function openDetails(photo) {
  if (!editablePhotos().includes(photo)) return;
  showScreen("details");
  details.open(photo);
}

/** Photos kept in IndexedDB from before a reload: back in the grid; those the server registered are dropped. */
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
      ...newPhoto({ capturedAt: record.capturedAt, filename: record.filename }),
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

function showRestored(restored) {
  const queued = restored.filter((photo) => photo.queued);
  setText(els.restoredNote, queued.length
    ? `${plural(restored.length, "photo")} kept from before the page reloaded. Sending ${queued.length === 1 ? "it" : "them"} now.`
    : `${plural(restored.length, "photo")} kept from before the page reloaded, ready to upload.`);
  show(els.restoredNote, true);
  showScreen("review");
  announce(els.restoredNote.textContent);
  if (queued.length) uploadAll();
}

// ---------------------------------------------------------------------------------------------- upload

async function uploadAll() {
  if (state.uploading || state.ended) return;
  const batch = state.photos.filter((p) => ["preparing", "ready", "failed"].includes(p.status) && (p.blob || p.ready));
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

function showDone() {
  const sent = state.sentCount;
  const total = state.serverImages.size;
  const full = remainingCapacity() <= 0;
  const canCommit = Boolean(state.settings.phoneCanCommit) && total > 0;
  setText($("#done-title"), full ? "Session full" : `${plural(sent, "photo")} sent`);
  setText($("#done-text"), full
    ? `${plural(sent, "photo")} sent. This session now holds ${total}, the most it can, so no more can be added.`
    : `They are on the clinician's screen now. This session has ${plural(total, "photo")}.`);
  setText($("#done-next"), full
    ? (canCommit ? "Commit these photos now, or ask the clinician to review and commit them on the desktop."
      : "Ask the clinician to commit these photos on the desktop. For more, they can start a new session.")
    : canCommit ? "Take more, or commit them to the record now." : "Take more, or hand the phone back for the clinician to review them on the desktop.");
  $("#done-icon").className = `message-icon message-icon-${full ? "info" : "ok"}`;
  $("#done-icon use").setAttribute("href", full ? "#i-images" : "#i-check-circle");
  show($("#phone-commit"), canCommit);
  setText($("#phone-commit-text"), `Commit ${plural(total, "photo")} now`);
  show($("#done-more"), !full);
  $("#done-more").className = `btn ${canCommit ? "btn-secondary" : "btn-primary"} btn-xl btn-block`;
  state.sentCount = 0;
  showScreen("done");
  announce(`${plural(sent, "photo")} sent to the desktop.`);
}

// ---------------------------------------------------------------------------------------------- final

/** End of the session on this phone: stop everything and forget every photo, in memory and in IndexedDB. */
function finish(kind, reason, { notified = true } = {}) {
  if (state.ended) return;
  state.ended = true;
  state.abort.abort();
  state.events?.close();
  camera.stop();
  terminateResizer();
  phoneCommit.close();
  wrongPatient.close();
  const unsent = pendingPhotos().length;
  for (const photo of state.photos) releasePhoto(photo);
  state.photos = [];
  state.serverImages.clear();
  details.clear();
  if (state.store) state.store.clear();
  else if (state.session) wipeSession(state.session.id);
  forgetPairing();
  const copy = endingCopy(kind, { name: state.session?.patient?.name || "the patient", unsent, reason, notified });
  setText($("#final-title"), copy.title);
  setText($("#final-text"), copy.text);
  setText($("#final-next"), copy.next);
  const finalIcon = $("#final-icon");
  finalIcon.className = `message-icon message-icon-${copy.tone}`;
  finalIcon.querySelector("use").setAttribute("href", `#i-${copy.icon}`);
  setText(els.pbState, copy.badge);
  els.banner.dataset.ended = kind;
  grid.sync([]);
  showScreen("final");
  announce(copy.title);
}

// ---------------------------------------------------------------------------------------------- render

function render() {
  const pending = pendingPhotos();
  const count = pending.length;
  setText(els.photoCount, plural(count, "photo"));
  els.viewfinder.dataset.count = String(count);
  els.reviewBtn.disabled = count === 0 && state.screen === "capture";
  setText(els.reviewBtnText, count ? `Review ${count}` : "Review");
  els.reviewBtn.setAttribute("aria-label", count ? `Review ${plural(count, "photo")}` : "Review photos");
  const last = [...state.photos].reverse().find((p) => p.url);
  if (last) els.lastThumb.src = last.url;
  else els.lastThumb.removeAttribute("src");
  show(els.lastThumb, Boolean(last));
  const retakeOf = state.retake && state.photos.find((p) => p.id === state.retake.id);
  show(els.retakeChip, state.screen === "capture" && Boolean(retakeOf));
  if (retakeOf) setText(els.retakeChip, `Retaking photo ${state.photos.indexOf(retakeOf) + 1}`);

  const remaining = remainingCapacity();
  els.shutter.disabled = !camera.active || state.ended || (remaining <= 0 && !state.retake);
  els.filesBtn.disabled = state.ended || (remaining <= 0 && !state.retake);
  const note = capacityNote(remaining);
  for (const el of [els.captureCapacity, els.reviewCapacity]) {
    setText(el, note?.text || "");
    show(el, Boolean(note));
    if (el) el.dataset.level = note?.level || "";
  }

  grid.sync(state.photos); // also drops the cards (and their blob: images) of photos sent or deleted
  if (state.screen === "review") {
    show(els.reviewEmpty, !state.photos.length);
    setText($("#review-title"), state.photos.length ? `Review ${plural(state.photos.length, "photo")}` : "Review");
  }
  const consent = describeConsent(state.session?.consent);
  for (const [line, text] of [["#consent-line", "#consent-line-text"], ["#done-consent", "#done-consent-text"]]) {
    show($(line), Boolean(consent));
    setText($(text), consent);
  }
  show(els.wrongPatient, !state.ended);
  show(els.pbState, state.ended);

  const actionable = state.photos.filter((p) => ["preparing", "ready", "failed"].includes(p.status)).length;
  // On the camera screen the bar is always there, so the preview does not change size at the first photo.
  const barVisible = !state.ended && (state.screen === "capture" || (state.screen === "review" && state.photos.length > 0));
  show(els.actionBar, barVisible);
  document.body.classList.toggle("has-action-bar", barVisible);
  const failed = state.photos.filter((p) => p.status === "failed").length;
  els.uploadAll.disabled = state.uploading || actionable === 0;
  const waiting = state.photos.some((p) => p.waiting);
  setText(els.uploadAllText, waiting ? "Waiting for the network…" : state.uploading ? "Uploading…"
    : actionable === 0 ? "Upload"
      : failed && failed === actionable ? `Retry ${plural(failed, "photo")}`
        : actionable === 1 ? "Upload 1 photo" : `Upload all ${actionable} photos`);
  const { gaps, fields } = metadataGaps(editablePhotos(), state.settings.requiredMetadata);
  show(els.requiredHint, state.screen === "review" && gaps.length > 0);
  setText(els.requiredHint, gaps.length
    ? `${sentenceCase(listFields(fields))} not set on ${plural(gaps.length, "photo")}: tap Details, or the clinician can add ${fields.length > 1 ? "them" : "it"} on the desktop.`
    : "");
  renderOverall();
  renderNet();
}

function capacityNote(remaining) {
  const { maxImages, warnImages } = state.settings;
  const total = state.serverImages.size + pendingPhotos().length;
  if (state.refusedNote) return { level: "error", text: state.refusedNote };
  if (remaining <= 0) return { level: "error", text: `This session is full (${maxImages} photos). Upload these, then ask the clinician to commit before taking more.` };
  if (total >= warnImages) return { level: "warn", text: `${plural(total, "photo")} in this session. It holds at most ${maxImages}; ${remaining} more can be added.` };
  return null;
}

function renderOverall() {
  const batch = state.photos.filter((p) => ["queued", "uploading", "registering", "done", "failed"].includes(p.status));
  const active = state.uploading || batch.some((p) => ["queued", "uploading", "registering"].includes(p.status));
  show(els.overall, active);
  if (!active) return;
  const done = batch.filter((p) => p.status === "done").length;
  const fraction = batch.reduce((sum, p) => sum + (p.status === "done" ? 1 : p.status === "registering" ? 0.95 : (p.progress || 0) * 0.9), 0) / Math.max(1, batch.length);
  const waiting = batch.some((p) => p.waiting);
  els.overall.dataset.waiting = String(waiting);
  setText(els.overallText, waiting ? `Waiting for the network · ${done} of ${batch.length} sent`
    : `Sending ${Math.min(done + 1, batch.length)} of ${batch.length}…`);
  setText(els.overallPct, `${Math.round(fraction * 100)}%`);
  els.overallProgress.value = fraction;
}

/** The offline strip under the banner: shown whenever the browser says the network is gone. */
function renderNet() {
  show(els.netNote, !navigator.onLine && Boolean(state.session) && !state.ended);
}

// ---------------------------------------------------------------------------------------------- wiring

els.shutter.addEventListener("click", onShutter);
els.filesBtn.addEventListener("click", () => els.fileInput.click());
els.fileInput.addEventListener("change", () => onFilesChosen(els.fileInput.files));
els.reviewBtn.addEventListener("click", () => showScreen("review"));
$("#take-more-btn").addEventListener("click", () => { state.retake = null; showScreen("capture"); });
$("#done-more").addEventListener("click", () => showScreen("capture"));
$("#phone-commit").addEventListener("click", () => phoneCommit.open());
els.uploadAll.addEventListener("click", () => uploadAll());
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
  if (!state.ended && pendingPhotos().length && !state.store?.available) event.preventDefault();
});

// Hooks for automation and the benchmark (bench/capture_latency.py): no secrets, no photos.
window.__consultcam = { resizePhoto, state, events: null, timings };

pair();

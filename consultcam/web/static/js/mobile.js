// The phone page (/m/{token}): pair, capture, review, upload, and the final screens.
//
// Photos live only in this page's memory: resized in a worker straight after capture (the 12 MP original is
// dropped at once), shown from object URLs that are revoked as soon as the photo is uploaded or deleted.
// Nothing goes to the camera roll, IndexedDB or a cache.

import { ApiError, api } from "./api.js";
import { Camera, CameraError } from "./camera.js";
import { $, announce, readPageData, setText, show } from "./dom.js";
import { EventStream } from "./events.js";
import { formatBirthDateWithAge, plural } from "./format.js";
import { describePairingError, forgetPairing, redeem } from "./pairing.js";
import { resizePhoto, terminateResizer } from "./resize.js";
import { ReviewGrid } from "./review.js";
import { runPool, uploadPhoto } from "./upload-queue.js";

const page = readPageData();
const timings = []; // per upload, wall-clock ms: for bench/capture_latency.py
const UPLOAD_CONCURRENCY = 2;

const state = {
  screen: "pairing",
  session: null,
  settings: {
    maxEdgePx: 2048, maxBytes: 1024 * 1024, maxUploadBytes: 10 * 1024 * 1024,
    acceptedTypes: ["image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"],
    maxImages: page.config?.maxImages ?? 50, warnImages: page.config?.warnImages ?? 20,
  },
  photos: [], // {id, status, blob, url, width, height, capturedAt, label, filename, progress, error, ready}
  serverImages: new Set(),
  uploading: false,
  retakeId: null,
  sentCount: 0,
  events: null,
  ended: false,
};

const els = {
  banner: $("#patient-banner"),
  main: $("#main"),
  video: $("#preview"),
  viewfinder: $("#viewfinder"),
  cameraMsg: $("#camera-msg"),
  flash: $("#flash"),
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
  actionBar: $("#action-bar"),
  uploadAll: $("#upload-all"),
  uploadAllText: $("#upload-all-text"),
  overall: $("#overall"),
  overallText: $("#overall-text"),
  overallPct: $("#overall-pct"),
  overallProgress: $("#overall-progress"),
};

const camera = new Camera(els.video);
const grid = new ReviewGrid($("#photo-grid"), {
  onLabel: (photo, label) => { photo.label = label; },
  onDelete: (photo) => deletePhoto(photo),
  onRetake: (photo) => { state.retakeId = photo.id; showScreen("capture"); },
  onRetry: (photo) => retryPhoto(photo),
});

// ---------------------------------------------------------------------------------------------- screens

const SCREENS = ["pairing", "error", "capture", "review", "done", "final"];

function showScreen(name) {
  state.screen = name;
  for (const screen of SCREENS) show($(`#screen-${screen}`), screen === name);
  document.body.dataset.screen = name;
  show(els.banner, Boolean(state.session) && name !== "error");
  if (name === "capture") startCamera();
  else camera.stop();
  show(els.retakeChip, name === "capture" && Boolean(state.retakeId));
  if (name !== "capture" && name !== "review") state.retakeId = null;
  render();
  window.scrollTo({ top: 0 });
}

function showError({ title, text, next, retry = null }) {
  setText($("#error-title"), title);
  setText($("#error-text"), text);
  setText($("#error-next"), next);
  const retryBtn = $("#error-retry");
  show(retryBtn, Boolean(retry));
  retryBtn.onclick = retry;
  showScreen("error");
}

// ---------------------------------------------------------------------------------------------- pairing

async function pair() {
  try {
    const { session, captureSettings } = await redeem(page.token);
    onPaired(session, captureSettings);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    const copy = describePairingError(err);
    showError({ ...copy, retry: copy.retryable ? () => { showScreen("pairing"); pair(); } : null });
  }
}

function onPaired(session, captureSettings) {
  state.session = session;
  Object.assign(state.settings, captureSettings || {});
  state.serverImages = new Set((session.images || []).map((image) => image.id));
  renderBanner(session.patient || {});
  if (session.status && session.status !== "open") return finish(session.status === "committed" ? "committed" : "ended");
  startEvents();
  showScreen("capture");
  announce(`Connected. Taking photos for ${session.patient?.name || "the patient"}.`);
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

async function refreshSession() {
  try {
    const session = await api.getSession(state.session.id);
    state.serverImages = new Set((session.images || []).map((image) => image.id));
    if (session.status === "committed") finish("committed");
    else if (session.status !== "open") finish("ended");
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
    case "session.committed":
      finish("committed");
      return;
    case "session.expired":
      finish("ended", data.reason);
      return;
    case "phone.revoked":
      // An ended session has already said why (session.expired comes first); this is a plain sign-out.
      if (!data.phoneId || !state.session.phone?.id || data.phoneId === state.session.phone.id) {
        finish("revoked");
      }
      return;
    default:
      return;
  }
  render();
}

// ---------------------------------------------------------------------------------------------- camera

async function startCamera() {
  if (state.ended) return;
  els.viewfinder.dataset.state = "starting";
  renderCameraMessage("starting");
  try {
    await camera.start();
    if (state.screen !== "capture") { camera.stop(); return; }
    els.viewfinder.dataset.state = "live";
    renderCameraMessage(null);
  } catch (err) {
    els.viewfinder.dataset.state = "unavailable";
    renderCameraMessage("error", err instanceof CameraError ? err.message : "The camera could not be started.");
  }
  render();
}

function renderCameraMessage(kind, text = "") {
  const msg = els.cameraMsg;
  msg.replaceChildren();
  show(msg, Boolean(kind));
  if (kind === "starting") {
    msg.append(Object.assign(document.createElement("div"), { className: "spinner spinner-light" }));
    msg.append(Object.assign(document.createElement("p"), { textContent: "Starting camera…" }));
  } else if (kind === "error") {
    const title = Object.assign(document.createElement("p"), { className: "vf-title", textContent: "Camera not available" });
    const body = Object.assign(document.createElement("p"), { textContent: text });
    const actions = Object.assign(document.createElement("div"), { className: "vf-actions" });
    const pick = Object.assign(document.createElement("button"), {
      type: "button", className: "btn btn-primary btn-lg", textContent: "Add photos",
    });
    pick.addEventListener("click", () => els.fileInput.click());
    const again = Object.assign(document.createElement("button"), {
      type: "button", className: "btn btn-on-dark", textContent: "Try camera again",
    });
    again.addEventListener("click", () => startCamera());
    actions.append(pick, again);
    msg.append(title, body, actions);
  }
}

async function onShutter() {
  if (!camera.active || state.ended) return;
  if (!state.retakeId && remainingCapacity() <= 0) return render();
  els.shutter.disabled = true;
  flash();
  try {
    const still = await camera.capture();
    addPhoto(still, { capturedAt: new Date().toISOString() });
  } catch (err) {
    announce(err?.message || "The photo could not be taken.");
  } finally {
    els.shutter.disabled = false;
    render();
  }
}

function flash() {
  navigator.vibrate?.(25);
  els.flash.classList.remove("on");
  void els.flash.offsetWidth; // restart the animation
  els.flash.classList.add("on");
}

// ---------------------------------------------------------------------------------------------- photos

function newPhoto({ capturedAt, filename }) {
  return {
    id: crypto.randomUUID(), status: "preparing", blob: null, url: null, width: 0, height: 0,
    capturedAt: capturedAt || new Date().toISOString(), label: "", filename: filename || null,
    progress: 0, error: null, ready: null,
  };
}

/** Add a camera still or a picked file; with a retake pending it replaces that photo in place. */
function addPhoto(source, options) {
  let photo;
  const retake = state.retakeId && state.photos.find((p) => p.id === state.retakeId);
  if (retake) {
    releasePhoto(retake);
    Object.assign(retake, newPhoto(options), { id: retake.id, label: retake.label });
    photo = retake;
    state.retakeId = null;
  } else {
    photo = newPhoto(options);
    state.photos.push(photo);
  }
  photo.ready = preparePhoto(photo, source);
  announce(`Photo ${state.photos.indexOf(photo) + 1} taken.`);
  render();
  if (retake) showScreen("review");
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
  state.photos = state.photos.filter((p) => p !== photo);
  announce("Photo deleted.");
  render();
  if (!state.photos.length) showScreen("capture");
}

function pendingPhotos() {
  return state.photos.filter((p) => p.status !== "done");
}

function remainingCapacity() {
  return state.settings.maxImages - state.serverImages.size - pendingPhotos().length;
}

function onFilesChosen(fileList) {
  const files = [...fileList];
  els.fileInput.value = "";
  if (!files.length) return;
  if (state.retakeId) {
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

// ---------------------------------------------------------------------------------------------- upload

async function uploadAll() {
  if (state.uploading) return;
  const batch = state.photos.filter((p) => ["preparing", "ready", "failed"].includes(p.status) && (p.blob || p.ready));
  if (!batch.length) return;
  state.uploading = true;
  state.refusedNote = null;
  for (const photo of batch) {
    photo.status = "queued";
    photo.error = null;
    photo.progress = 0;
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
  try {
    const image = await uploadPhoto(state.session.id, photo, {
      onStage: (stage) => { photo.status = stage; photo.retrying = false; grid.update(photo); renderOverall(); },
      onProgress: (fraction) => { photo.progress = fraction; grid.update(photo); renderOverall(); },
      onRetry: () => { photo.retrying = true; grid.update(photo); },
    });
    photo.status = "done";
    photo.retrying = false;
    timings.push({ imageId: image.id, uploadStart, registered: performance.timeOrigin + performance.now(), bytes: photo.blob.size });
    state.serverImages.add(image.id);
    state.sentCount += 1;
    releasePhoto(photo); // the desktop has it now; the phone keeps nothing
  } catch (err) {
    photo.status = "failed";
    photo.retrying = false;
    photo.error = err instanceof ApiError ? err.detail : "The upload failed.";
  }
  grid.update(photo);
  render();
}

function afterUploads() {
  if (state.ended) return;
  const failed = state.photos.filter((p) => p.status === "failed");
  state.photos = state.photos.filter((p) => p.status !== "done");
  if (!failed.length && !state.photos.length) {
    const sent = state.sentCount;
    setText($("#done-title"), `${plural(sent, "photo")} sent`);
    setText($("#done-text"),
      `They are on the clinician's screen now. This session has ${plural(state.serverImages.size, "photo")}.`);
    state.sentCount = 0;
    showScreen("done");
    announce(`${plural(sent, "photo")} sent to the desktop.`);
  } else {
    render();
    announce(`${plural(failed.length, "photo")} could not be sent. Tap Retry on each.`);
  }
}

// ---------------------------------------------------------------------------------------------- final

/** End of the session on this phone: stop everything and forget every photo. */
function finish(kind, reason) {
  if (state.ended) return;
  state.ended = true;
  state.events?.close();
  camera.stop();
  terminateResizer();
  const unsent = pendingPhotos().length;
  for (const photo of state.photos) releasePhoto(photo);
  state.photos = [];
  state.serverImages.clear();
  forgetPairing();
  const name = state.session?.patient?.name || "the patient";
  const copy = {
    committed: ["Saved to the record", `The photos are now in ${name}'s record. They have been removed from consultcam.`, "ok"],
    ended: reason === "cancelled"
      ? ["Session cancelled", "The clinician cancelled this session on the desktop. Its photos were deleted and nothing was saved to the record.", "info"]
      : ["This session has ended", reason && reason !== "cancelled"
        ? "It was closed after a period with no activity. Photos not yet sent were not kept."
        : "It was closed on the desktop. Photos not yet sent were not kept.", "info"],
    revoked: ["This phone was disconnected", "The desktop ended this phone's access to the session. Photos not yet sent were not kept.", "info"],
  }[kind] || ["This session has ended", "", "info"];
  setText($("#final-title"), copy[0]);
  setText($("#final-text"), unsent && kind === "committed"
    ? `${copy[1]} ${plural(unsent, "photo")} still on this phone had not been sent and ${unsent === 1 ? "was" : "were"} discarded.`
    : copy[1]);
  const finalIcon = $("#final-icon");
  finalIcon.className = `message-icon message-icon-${copy[2]}`;
  finalIcon.querySelector("use").setAttribute("href", copy[2] === "ok" ? "#i-check-circle" : "#i-info");
  grid.sync([]);
  showScreen("final");
  announce(copy[0]);
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

  const remaining = remainingCapacity();
  els.shutter.disabled = !camera.active || state.ended || (remaining <= 0 && !state.retakeId);
  els.filesBtn.disabled = state.ended || (remaining <= 0 && !state.retakeId);
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

  const actionable = state.photos.filter((p) => ["preparing", "ready", "failed"].includes(p.status)).length;
  const barVisible = (state.screen === "capture" && count > 0) || (state.screen === "review" && state.photos.length > 0);
  show(els.actionBar, barVisible);
  document.body.classList.toggle("has-action-bar", barVisible);
  const failed = state.photos.filter((p) => p.status === "failed").length;
  els.uploadAll.disabled = state.uploading || actionable === 0;
  setText(els.uploadAllText, state.uploading ? "Uploading…"
    : failed && failed === actionable ? `Retry ${plural(failed, "photo")}`
      : actionable === 1 ? "Upload 1 photo" : `Upload all ${actionable || ""} photos`.replace("  ", " "));
  renderOverall();
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
  setText(els.overallText, `Sending ${done + 1 > batch.length ? batch.length : done + 1} of ${batch.length}…`);
  setText(els.overallPct, `${Math.round(fraction * 100)}%`);
  els.overallProgress.value = fraction;
}

// ---------------------------------------------------------------------------------------------- wiring

els.shutter.addEventListener("click", onShutter);
els.filesBtn.addEventListener("click", () => els.fileInput.click());
els.fileInput.addEventListener("change", () => onFilesChosen(els.fileInput.files));
els.reviewBtn.addEventListener("click", () => showScreen("review"));
$("#take-more-btn").addEventListener("click", () => { state.retakeId = null; showScreen("capture"); });
$("#done-more").addEventListener("click", () => showScreen("capture"));
els.uploadAll.addEventListener("click", () => uploadAll());

document.addEventListener("visibilitychange", () => {
  if (document.hidden) camera.stop();
  else if (state.screen === "capture") startCamera();
});
window.addEventListener("pagehide", () => camera.stop());
window.addEventListener("beforeunload", (event) => {
  if (!state.ended && pendingPhotos().length) event.preventDefault();
});

// Hooks for automation and the benchmark (bench/capture_latency.py): no secrets, no photos.
window.__consultcam = { resizePhoto, state, events: null, timings };

pair();

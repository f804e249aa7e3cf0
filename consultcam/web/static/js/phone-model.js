// The phone page's state and the pure rules over it: which photos are still to send, which can still be
// edited, how many more the session can hold, which photos "Upload all" sends, what the upload button and
// the overall progress strip say, and what a server event or a session's status means for this phone.
// No DOM, no network, no clock of its own: node --test runs it (tests/js/phone-model.test.mjs).
//
// A photo: {id, seq, status, blob, url, width, height, capturedAt, metadata, check, filename, progress,
// error, ready, queued, waiting, retrying, imageId}. Its status goes preparing → ready → queued → uploading
// → registering → done, or to failed from any of them (and back to queued on Retry).

import { plural } from "./format.js";

/** Statuses of a photo whose details can still change and that "Upload all" (re)sends. */
export const EDITABLE_STATUSES = Object.freeze(["preparing", "ready", "failed"]);
/** Statuses of a photo on its way to the server. */
export const SENDING_STATUSES = Object.freeze(["queued", "uploading", "registering"]);
/** Statuses counted in the overall progress strip: the photos of the current upload batch. */
const BATCH_STATUSES = Object.freeze([...SENDING_STATUSES, "done", "failed"]);

/**
 * The page's state before pairing.
 * @param {{maxImages?: number, warnImages?: number}} config the server's page config (MAX/WARN images)
 * @param {number} now ms since the epoch: photo sequence numbers start there, so they grow across reloads
 */
export function createState(config = {}, now = Date.now()) {
  return {
    screen: "pairing",
    session: null,
    settings: {
      maxEdgePx: 2048, maxBytes: 1024 * 1024, maxUploadBytes: 10 * 1024 * 1024,
      acceptedTypes: ["image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"],
      maxImages: config?.maxImages ?? 50, warnImages: config?.warnImages ?? 20,
      consentRequired: false, requiredMetadata: [], phoneCanCommit: false,
    },
    photos: [], // in capture order; see the photo shape above
    serverImages: new Set(), // ids of the images the session holds on the server
    uploading: false,
    retake: null, // {id, from: "camera" | "review"}
    refusedNote: null, // why picked files were not added (the session would be over its cap)
    sentCount: 0,
    events: null,
    ended: false,
    store: null,
    seq: now,
    abort: new AbortController(),
    terminology: null, // body sites, sides and views, for the words on the review cards
  };
}

/**
 * Take on the settings from pairing: the capture settings, then the session's own issue-5 settings where the
 * capture settings lack them (a resumed page has only what it stored at pairing). Mutates state.settings.
 */
export function applySettings(state, session, captureSettings) {
  const settings = captureSettings || {};
  Object.assign(state.settings, settings);
  for (const key of ["consentRequired", "requiredMetadata", "phoneCanCommit"]) {
    if (settings[key] === undefined && session[key] !== undefined) state.settings[key] = session[key];
  }
}

/** A new photo, not yet prepared; takes the next sequence number from state.seq. */
export function newPhoto(state, { capturedAt, filename } = {}) {
  state.seq += 1;
  return {
    id: crypto.randomUUID(), seq: state.seq, status: "preparing", blob: null, url: null, width: 0, height: 0,
    capturedAt: capturedAt || new Date().toISOString(), metadata: {}, check: null, filename: filename || null,
    progress: 0, error: null, ready: null, queued: false, waiting: false, imageId: null,
  };
}

/** Photos still on the phone (every one not yet sent). */
export function pendingPhotos(state) {
  return state.photos.filter((p) => p.status !== "done");
}

/** Photos whose details can still change (not being sent, not sent). */
export function editablePhotos(state) {
  return state.photos.filter((p) => EDITABLE_STATUSES.includes(p.status));
}

/** The photos "Upload all" sends: those not being sent or sent, with bytes or bytes on the way. */
export function uploadBatch(state) {
  return state.photos.filter((p) => EDITABLE_STATUSES.includes(p.status) && (p.blob || p.ready));
}

/** How many more photos the session can take: its cap less those on the server and those on the phone. */
export function remainingCapacity(state) {
  return state.settings.maxImages - state.serverImages.size - pendingPhotos(state).length;
}

/**
 * The note under the shutter and above the review grid, or null: a refusal first, then "full" (error),
 * then a warning once the session holds warnImages (CONSULTCAM_WARN_IMAGES).
 * @returns {{level: "error"|"warn", text: string} | null}
 */
export function capacityNote(state) {
  const { maxImages, warnImages } = state.settings;
  const remaining = remainingCapacity(state);
  const total = state.serverImages.size + pendingPhotos(state).length;
  if (state.refusedNote) return { level: "error", text: state.refusedNote };
  if (remaining <= 0) return { level: "error", text: `This session is full (${maxImages} photos). Upload these, then ask the clinician to commit before taking more.` };
  if (total >= warnImages) return { level: "warn", text: `${plural(total, "photo")} in this session. It holds at most ${maxImages}; ${remaining} more can be added.` };
  return null;
}

/** Why `left` picked files were not added: the session would go over its cap. */
export function refusedFilesNote(maxImages, left) {
  return `The session can hold ${maxImages} photos, so ${plural(left, "photo")} ${left === 1 ? "was" : "were"} not added.`;
}

/** The words on the upload button: waiting, uploading, retry (all failed), or how many it sends. */
export function uploadButtonText(state) {
  const actionable = editablePhotos(state).length;
  const failed = state.photos.filter((p) => p.status === "failed").length;
  if (state.photos.some((p) => p.waiting)) return "Waiting for the network…";
  if (state.uploading) return "Uploading…";
  if (actionable === 0) return "Upload";
  if (failed && failed === actionable) return `Retry ${plural(failed, "photo")}`;
  return actionable === 1 ? "Upload 1 photo" : `Upload all ${actionable} photos`;
}

/**
 * The overall progress strip of an upload batch. A photo counts 90% of its share while its bytes go up, 95%
 * while it is registered, and all of it once sent.
 * @returns {{active: boolean, done: number, total: number, fraction: number, waiting: boolean, text: string}}
 *   fraction 0…1; active: the strip shows (the loop runs, or a photo is on its way)
 */
export function overallProgress(state) {
  const batch = state.photos.filter((p) => BATCH_STATUSES.includes(p.status));
  const active = state.uploading || batch.some((p) => SENDING_STATUSES.includes(p.status));
  const done = batch.filter((p) => p.status === "done").length;
  const share = (p) => (p.status === "done" ? 1 : p.status === "registering" ? 0.95 : (p.progress || 0) * 0.9);
  const fraction = batch.reduce((sum, p) => sum + share(p), 0) / Math.max(1, batch.length);
  const waiting = batch.some((p) => p.waiting);
  const text = waiting ? `Waiting for the network · ${done} of ${batch.length} sent`
    : `Sending ${Math.min(done + 1, batch.length)} of ${batch.length}…`;
  return { active, done, total: batch.length, fraction, waiting, text };
}

/**
 * What a `phone.revoked` event means here: the ending to show, or null when it is about another phone.
 * An ended session has already said why (session.expired comes first); this is a plain sign-out unless the
 * reason is one the phone has its own words for.
 * @returns {"wrong-patient"|"paired-elsewhere"|"revoked"|null}
 */
export function revocationEnding(data, session) {
  const thisPhone = session?.phone?.id;
  if (data.phoneId && thisPhone && data.phoneId !== thisPhone) return null;
  return ["wrong-patient", "paired-elsewhere"].includes(data.reason) ? data.reason : "revoked";
}

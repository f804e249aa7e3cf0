// The desktop session page (`/sessions/{id}`): builds its parts (QR card, gallery, details panel, consent,
// commit dialog, uploads from this computer, event stream), wires the page's own buttons, and keeps the
// session's state: loaded from GET /api/sessions/{id}, changed by events (desktop-events.js), caught up
// with a fresh snapshot after a gap in the stream.
//
// The desktop-*.js modules share one `page` record (DesktopPage below), the first argument of their
// functions; they call back into this module only through `page.reload()` and `page.fresh()`, so no module
// imports another in a circle.

import { ApiError, api } from "./api.js";
import { CommitDialog } from "./commit-dialog.js";
import { ConsentPanel } from "./consent-dialog.js";
import { DesktopUpload } from "./desktop-upload.js";
import { committed, confirmCancel, endSession, fatal } from "./desktop-ending.js";
import { handleEvent } from "./desktop-events.js";
import { confirmRevoke, firstPairing, newPairing, wirePhoneNotices } from "./desktop-phone.js";
import { confirmDelete, jumpTo, openViewer } from "./desktop-photos.js";
import {
  renderBanner, renderCount, renderLastCommit, renderLive, renderSelection, renderStatus, targets,
} from "./desktop-render.js";
import { $, announce } from "./dom.js";
import { EventStream } from "./events.js";
import { plural } from "./format.js";
import { Gallery } from "./gallery.js";
import { MetadataPanel } from "./metadata-panel.js";
import { PhotoFreshness, reconcileSnapshot } from "./photo-freshness.js";
import { QrPanel } from "./qr-panel.js";

/**
 * @typedef {object} DesktopState
 * @property {object|null} session  the last snapshot (GET /api/sessions/{id}), kept current by events
 * @property {object|null} phone  the paired phone, or null
 * @property {string|null} ended  how the page ended ("committed", "cancelled", "expired", "error"), or null
 * @property {boolean} ready  the first snapshot is shown; until then events wait in `buffer`
 * @property {object[]} buffer  events that arrived before the first snapshot
 * @property {boolean} pairingBusy  a new pairing code is being asked for
 * @property {object|null} viewer  the open image viewer's handle (image-viewer.js), or null
 *
 * @typedef {object} DesktopPage
 * @property {string} sessionId
 * @property {{maxImages: number, warnImages: number}} config
 * @property {DesktopState} state
 * @property {Gallery} gallery
 * @property {MetadataPanel} panel  the details panel
 * @property {ConsentPanel} consent
 * @property {CommitDialog} commit
 * @property {DesktopUpload} upload
 * @property {QrPanel} qr
 * @property {EventStream} events
 * @property {PhotoFreshness} freshness  stamps of the news seen of each photo
 * @property {string} commitHint  the commit card's usual hint
 * @property {() => string[]} required  the metadata fields commit requires
 * @property {(image: object) => void} fresh  show news of a photo (stamped, then put in the gallery)
 * @property {() => Promise<void>} reload  catch up with a fresh snapshot
 * @property {() => void} markLoaded  the first snapshot is shown (or will never be)
 * @property {Promise<void>} loaded  resolved by markLoaded()
 */

/**
 * Run the session page for `sessionId`.
 * @param {string} sessionId
 * @param {{maxImages: number, warnImages: number}} config  photos a session holds, and when to warn
 */
export function sessionPage(sessionId, config) {
  const page = {
    sessionId,
    config,
    state: { session: null, phone: null, ended: null, ready: false, buffer: [], pairingBusy: false, viewer: null },
    commitHint: $("#commit-hint").textContent,
    freshness: new PhotoFreshness(),
  };
  page.required = () => page.state.session?.requiredMetadata || [];
  page.fresh = (image) => { page.freshness.stamp(image.id); page.gallery.upsert(image); };
  page.reload = () => reload(page);
  page.loaded = new Promise((resolve) => { page.markLoaded = resolve; });
  const { state } = page;
  const shownAt = {};

  page.qr = new QrPanel({ onNewCode: () => newPairing(page), onRevoke: () => confirmRevoke(page) });
  page.gallery = new Gallery($("#gallery"), {
    fetchImage: (imageId) => api.getImage(sessionId, imageId),
    downloadUrl: (imageId) => api.downloadUrl(sessionId, imageId),
    onDelete: (image, position) => confirmDelete(page, image, position),
    onLabel: async (image, label) => {
      const updated = await api.updateImage(sessionId, image.id, { metadata: { label: label || null } });
      page.fresh(updated);
    },
    onChange: () => renderCount(page),
    onOpen: (image, index) => openViewer(page, index),
    onSelection: () => renderSelection(page),
    onCurrent: () => { if (!page.gallery.selected.size) page.panel.show(targets(page.gallery)); },
    // When each photo first became visible (wall-clock ms), for bench/capture_latency.py.
    onShown: (imageId) => { shownAt[imageId] ??= performance.timeOrigin + performance.now(); },
  });
  page.panel = new MetadataPanel({
    sessionId,
    root: $("#inspector"),
    required: page.required,
    onSaved: (image) => page.fresh(image),
    onTerminology: (terminology) => page.gallery.setTerminology(terminology),
    position: (id) => page.gallery.position(id),
    latest: (id) => page.gallery.get(id),
  });
  page.consent = new ConsentPanel({
    sessionId,
    getSession: () => state.session,
    onRecorded: (session) => {
      state.session = { ...state.session, consent: session?.consent ?? state.session?.consent };
      page.consent.render(state.session);
    },
  });
  page.commit = new CommitDialog({
    sessionId,
    getImages: () => page.gallery.images(),
    getSession: () => state.session,
    required: page.required,
    position: (id) => page.gallery.position(id),
    onJump: (imageId, fields) => jumpTo(page, imageId, fields),
    onCommitted: (results) => committed(page, results),
    onConflict: () => reload(page),
  });
  page.upload = new DesktopUpload({
    sessionId,
    zone: $("#drop-zone"),
    input: $("#upload-input"),
    tray: $("#upload-tray"),
    settings: { maxImages: config.maxImages },
    enabled: () => !state.ended,
    remaining: () => config.maxImages - page.gallery.size,
    // Files dropped while the page is still loading wait for the session, then for consent if it is needed.
    ensureConsent: async (count) => {
      await page.loaded;
      if (state.ended) return false;
      return state.session?.consentRequired && !state.session?.consent ? page.consent.ask(count) : true;
    },
    onUploaded: (image) => {
      if (state.ended) return;
      const isNew = !page.gallery.has(image.id);
      page.fresh(image);
      if (isNew) announce(`Photo added. ${plural(page.gallery.size, "photo")} in this session.`);
    },
  });
  page.events = liveEvents(page);
  const { events, gallery, panel, upload } = page;
  window.__consultcam = { events, gallery, panel, upload, state, shownAt };

  wireButtons(page);
  wirePhoneNotices(page);
  // The stream opens first and buffers, so nothing between the snapshot and the subscription is lost.
  events.start();
  load(page);
}

/** The session's event stream. When the server ends it because this browser's sign-in was replaced (the
 * EMR's icon clicked again opens a new sign-in, which ends the old one and its streams), the page asks
 * whether the browser, with its new sign-in, may still see this session: then it carries on live on a new
 * stream; otherwise it says why (`fatal`). Any other end reloads, so the page shows the new state. */
function liveEvents(page) {
  const { sessionId, state } = page;
  return new EventStream(api.eventsUrl(sessionId), {
    onEvent: (event) => {
      if (!state.ready) state.buffer.push(event);
      else for (const one of withoutEndedCommits(state.session, [event])) handleEvent(page, one);
    },
    onState: renderLive,
    onReconnected: () => reload(page),
    check: () => api.getSession(sessionId),
    onFatal: (err) => fatal(page, err),
    onEnded: async ({ reason }) => {
      if (reason !== "credential-revoked" || state.ended) return reload(page);
      try {
        await api.getSession(sessionId);
      } catch (err) {
        if (err instanceof ApiError && !err.retryable) fatal(page, err);
        return undefined;
      }
      page.events = liveEvents(page);
      window.__consultcam.events = page.events;
      page.events.start();
      return reload(page);
    },
  });
}

function wireButtons(page) {
  const { gallery } = page;
  $("#commit-btn").addEventListener("click", () => page.commit.open());
  $("#cancel-btn").addEventListener("click", () => confirmCancel(page));
  $("#live-refresh").addEventListener("click", () => { page.events.reconnectNow(); reload(page); });
  $("#select-all").addEventListener("change", (event) => gallery.selectAll(event.target.checked));
  $("#download-all").addEventListener("click", (event) => {
    if (!gallery.size) event.preventDefault();
    else announce(`Downloading ${plural(gallery.size, "photo")} as a ZIP file.`);
  });
  // Escape clears a selection (text fields and dialogs keep their own Escape).
  $("#main").addEventListener("keydown", (event) => {
    if (event.key === "Escape" && gallery.selected.size && !event.target.matches("input[type=text], input[type=search], textarea")) {
      gallery.selectAll(false);
      announce("Selection cleared.");
    }
  });
}

/** The first snapshot: shown, then the events buffered meanwhile, then a pairing code if no phone is paired. */
async function load(page) {
  const { state } = page;
  try {
    const session = await api.getSession(page.sessionId);
    applySession(page, session);
    state.ready = true;
    page.markLoaded();
    for (const event of withoutEndedCommits(state.session, state.buffer.splice(0))) handleEvent(page, event);
    if (!state.ended && !state.phone) firstPairing(page);
  } catch (err) {
    fatal(page, err);
  }
}

const COMMIT_STEPS = ["commit.started", "commit.progress"];
const COMMIT_ENDS = ["commit.failed", "session.committed"];

/**
 * `events` without the start and progress of a commit that had already ended. A new page's stream replays
 * the session's history: a commit that ended before the page opened (e.g. it failed because the EHR's sign-in
 * had expired, and the GP launched again) must not come back as a commit "from the phone". Ended means: its
 * end follows in `events` (the history buffered before the snapshot), or it is no later than the snapshot's
 * last commit, which has ended (history arriving after the snapshot; server times on both sides: the event's
 * `at` and `lastCommit.endedAt`). An end is kept: the commit card shows how it ended.
 */
function withoutEndedCommits(session, events) {
  const last = session?.lastCommit;
  const endedBySnapshot = (event) => Boolean(last?.endedAt && event.at) && last.status !== "running"
    && Date.parse(event.at) <= Date.parse(last.endedAt);
  const skipped = new Set();
  let started = [];
  for (const event of events) {
    if (event.type === "commit.started") started = [event];
    else if (event.type === "commit.progress" && started.length) started.push(event);
    else if (COMMIT_ENDS.includes(event.type)) {
      started.forEach((one) => skipped.add(one));
      started = [];
    }
  }
  const replayed = (event) => skipped.has(event) || (COMMIT_STEPS.includes(event.type) && endedBySnapshot(event));
  return events.filter((event) => !replayed(event));
}

/** Catch up after an event-stream gap: the server's state is the truth, except for news seen since. */
async function reload(page) {
  const { freshness, gallery, state } = page;
  const asked = freshness.ticket();
  try {
    const session = await api.getSession(page.sessionId);
    const shown = new Map(gallery.images().map((image) => [image.id, image]));
    const newer = (imageId) => freshness.newerThan(imageId, asked);
    const { remove, images } = reconcileSnapshot(session.images || [], shown, newer, Boolean(state.ended));
    for (const imageId of remove) gallery.remove(imageId);
    session.images = images;
    applySession(page, session);
  } catch (err) {
    if (err instanceof ApiError && !err.retryable) fatal(page, err);
  }
}

/** Show a snapshot of the session (GET /api/sessions/{id}). */
function applySession(page, session) {
  const { gallery, qr, state } = page;
  state.session = session;
  renderBanner(session);
  gallery.setRequired(session.requiredMetadata || []);
  for (const image of session.images || []) gallery.upsert(image);
  page.consent.render(session);
  if (session.phone) {
    state.phone = session.phone;
    qr.phoneConnected(session.phone);
  } else if (state.phone) {
    state.phone = null;
    qr.waiting();
  } else if (!["alert", "signed-out"].includes($("#phone-status").dataset.state)) {
    qr.waiting(); // "Phone signed out" stays until another phone pairs
  }
  renderStatus(session.status);
  renderLastCommit(session, page.commitHint);
  if (session.status !== "open" && session.status !== "committing") endSession(page, session.status);
  renderCount(page);
  page.panel.show(targets(gallery));
}

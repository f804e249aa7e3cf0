// The desktop page: `/` shows the start form; `/sessions/{id}` shows the patient banner, the phone panel,
// the live gallery and commit. State comes from GET /api/sessions/{id}; changes arrive over SSE.

import { ApiError, api } from "./api.js";
import { CommitDialog, renderCommitResult } from "./commit-dialog.js";
import { $, announce, h, readPageData, setText, show } from "./dom.js";
import { EventStream } from "./events.js";
import { formatBirthDateWithAge, plural } from "./format.js";
import { Gallery } from "./gallery.js";
import { QrPanel } from "./qr-panel.js";
import { PAIRING_STASH, startForm } from "./start-form.js";

const page = readPageData();
const config = { maxImages: 50, warnImages: 20, ...(page.config || {}) };
window.__consultcam = { events: null };

if (page.sessionId) sessionPage(page.sessionId);
else startForm(page.launch || {});

function sessionPage(sessionId) {
  const state = { session: null, phone: null, ended: null, ready: false, buffer: [], pairingBusy: false };
  const shownAt = {};

  const qr = new QrPanel({ onNewCode: () => newPairing() });
  const gallery = new Gallery($("#gallery"), {
    fetchImage: (imageId) => api.getImage(sessionId, imageId),
    downloadUrl: (imageId) => api.downloadUrl(sessionId, imageId),
    onDelete: (image, position) => confirmDelete(image, position),
    onLabel: async (image, label) => {
      const metadata = { ...(image.metadata || {}), label: label || null };
      const updated = await api.updateImage(sessionId, image.id, { metadata });
      gallery.upsert(updated);
    },
    onChange: () => renderCount(),
    // When each photo first became visible (wall-clock ms), for bench/capture_latency.py.
    onShown: (imageId) => { shownAt[imageId] ??= performance.timeOrigin + performance.now(); },
  });
  const commit = new CommitDialog({
    sessionId,
    getImages: () => gallery.images(),
    getSession: () => state.session,
    onCommitted: (results) => committed(results),
    onConflict: () => reload(),
  });
  const events = new EventStream(api.eventsUrl(sessionId), {
    onEvent: (event) => (state.ready ? handleEvent(event) : state.buffer.push(event)),
    onState: renderLive,
    onReconnected: () => reload(),
    check: () => api.getSession(sessionId),
    onFatal: (err) => fatal(err),
  });
  window.__consultcam = { events, gallery, state, shownAt };

  $("#commit-btn").addEventListener("click", () => commit.open());
  $("#cancel-btn").addEventListener("click", () => confirmCancel());
  $("#live-refresh").addEventListener("click", () => { events.reconnectNow(); reload(); });

  // The stream opens first and buffers, so nothing between the snapshot and the subscription is lost.
  events.start();
  load();

  async function load() {
    try {
      const session = await api.getSession(sessionId);
      applySession(session);
      state.ready = true;
      for (const event of state.buffer.splice(0)) handleEvent(event);
      if (!state.ended && !state.phone) {
        const stashed = takeStashedPairing();
        if (stashed) qr.showPairing(stashed);
        else newPairing();
      }
    } catch (err) {
      fatal(err);
    }
  }

  /** Catch up after an event-stream gap: the server's state is the truth. */
  async function reload() {
    try {
      const session = await api.getSession(sessionId);
      const ids = new Set((session.images || []).map((image) => image.id));
      for (const image of gallery.images()) if (!ids.has(image.id) && !state.ended) gallery.remove(image.id);
      applySession(session);
    } catch (err) {
      if (err instanceof ApiError && !err.retryable) fatal(err);
    }
  }

  function applySession(session) {
    state.session = session;
    renderBanner(session);
    for (const image of session.images || []) gallery.upsert(image);
    if (session.phone) {
      state.phone = session.phone;
      qr.phoneConnected(session.phone);
    } else if (state.phone) {
      state.phone = null;
      qr.waiting();
    } else {
      qr.waiting();
    }
    renderStatus(session.status);
    if (session.status !== "open" && session.status !== "committing") endSession(session.status);
    renderCount();
  }

  function takeStashedPairing() {
    try {
      const stash = JSON.parse(sessionStorage.getItem(PAIRING_STASH) || "null");
      sessionStorage.removeItem(PAIRING_STASH);
      if (stash?.sessionId === sessionId && Date.parse(stash.pairing?.expiresAt) > Date.now() + 5000) return stash.pairing;
    } catch { /* a stale or foreign stash is ignored */ }
    return null;
  }

  async function newPairing() {
    if (state.pairingBusy || state.ended) return;
    state.pairingBusy = true;
    qr.loading();
    try {
      qr.showPairing(await api.newPairing(sessionId));
    } catch (err) {
      qr.error(err instanceof ApiError ? err.detail : "A code could not be made.");
      if (err instanceof ApiError && err.status === 409) reload();
    } finally {
      state.pairingBusy = false;
    }
  }

  function handleEvent(event) {
    const data = event.data || {};
    switch (event.type) {
      case "phone.paired":
        state.phone = data.phone;
        if (state.session) state.session.phone = data.phone;
        qr.phoneConnected(data.phone);
        announce("Phone connected.");
        break;
      case "phone.revoked":
        state.phone = null;
        if (state.session) state.session.phone = null;
        qr.waiting();
        // An ended session says so (session.expired) before it signs the phone out: no new code then.
        if (!state.ended && data.reason === "revoked") newPairing();
        break;
      case "image.added":
      case "image.updated":
      case "image.analysed": {
        if (!data.image || state.ended) break;
        const isNew = !gallery.has(data.image.id);
        gallery.upsert(data.image);
        if (isNew) announce(`New photo received. ${plural(gallery.size, "photo")} in this session.`);
        break;
      }
      case "image.deleted":
        gallery.remove(data.imageId);
        break;
      case "commit.started":
        commit.onProgress(0, data.total ?? gallery.size);
        renderStatus("committing");
        break;
      case "commit.progress":
        commit.onProgress(data.done ?? 0, data.total ?? gallery.size);
        break;
      case "session.committed":
        if (!commit.running) committed(data.results || []);
        break;
      case "commit.failed":
        renderStatus("open");
        break;
      case "session.expired":
        endSession(data.reason === "cancelled" ? "cancelled" : "expired");
        break;
      default:
        break;
    }
  }

  // -- rendering ---------------------------------------------------------------------------------------

  function renderBanner(session) {
    const patient = session.patient || {};
    setText($("#pb-name"), patient.name || "Unnamed patient");
    setText($("#pb-nhi"), patient.nhi || "not recorded");
    setText($("#pb-dob"), patient.birthDate ? formatBirthDateWithAge(patient.birthDate) : "not recorded");
    setText($("#pb-encounter"), session.encounterId || "");
    document.title = `${patient.name || "Photo session"} · consultcam`;
  }

  function renderStatus(status) {
    const pill = $("#session-status");
    const words = { open: "Open", committing: "Committing…", committed: "Committed", cancelled: "Cancelled", expired: "Expired" };
    pill.dataset.status = status;
    setText(pill, words[status] || status);
  }

  function renderLive(liveState) {
    const live = $("#live");
    live.dataset.state = liveState;
    const words = {
      connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…",
      offline: "Offline · retrying", closed: "Not live",
    };
    setText(live.querySelector(".live-text"), words[liveState] || liveState);
    live.title = liveState === "live" ? "New photos appear as soon as they are uploaded" : "Live updates are interrupted";
    show($("#live-refresh"), liveState === "offline");
    if (liveState === "offline") announce("Live updates are interrupted. Retrying.");
  }

  function renderCount() {
    const count = gallery.size;
    setText($("#photo-total"), String(count));
    setText($("#photo-total-label"), count === 1 ? "photo" : "photos");
    setText($("#gallery-summary"), count ? plural(count, "photo") : "");
    $("#photo-meter").style.width = `${Math.min(100, (count / config.maxImages) * 100)}%`;
    $("#photo-meter").dataset.level = count >= config.maxImages ? "full" : count >= config.warnImages ? "warn" : "ok";
    show($("#gallery-empty"), count === 0 && !state.ended);
    const warning = $("#capacity-warning");
    if (count >= config.maxImages) {
      setText(warning, `This session is full (${config.maxImages} photos). Commit or delete photos before taking more.`);
    } else if (count >= config.warnImages) {
      setText(warning, `${count} photos: the session holds at most ${config.maxImages}. Consider committing these first.`);
    }
    show(warning, count >= config.warnImages && !state.ended);
    const commitBtn = $("#commit-btn");
    commitBtn.disabled = count === 0 || Boolean(state.ended);
    setText(commitBtn, count ? `Commit ${plural(count, "photo")}` : "Commit photos");
  }

  // -- actions -----------------------------------------------------------------------------------------

  function confirmDelete(image, position) {
    const dialog = $("#delete-dialog");
    setText($("#delete-dialog-title"), `Delete photo ${position}?`);
    const preview = $("#delete-preview");
    const thumb = document.querySelector(`[data-image-id="${CSS.escape(image.id)}"] img`);
    preview.replaceChildren(...(thumb?.src ? [h("img", { src: thumb.src, alt: "" })] : []));
    dialog.returnValue = "";
    dialog.showModal();
    dialog.addEventListener("close", async () => {
      preview.replaceChildren();
      if (dialog.returnValue !== "delete") return;
      try {
        await api.deleteImage(sessionId, image.id);
        gallery.remove(image.id);
        announce(`Photo ${position} deleted.`);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) gallery.remove(image.id);
        else announce(err?.detail || "The photo could not be deleted.");
      }
    }, { once: true });
  }

  function confirmCancel() {
    const dialog = $("#cancel-dialog");
    dialog.returnValue = "";
    show($("#cancel-error"), false);
    dialog.showModal();
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "cancel") return;
      try {
        await api.cancelSession(sessionId);
        endSession("cancelled");
      } catch (err) {
        announce(err?.detail || "The session could not be cancelled.");
        reload();
      }
    }, { once: true });
  }

  function committed(results) {
    const panel = $("#commit-result");
    if (state.ended === "committed" && !panel.hidden) return;
    const positions = new Map(gallery.images().map((image, index) => [image.id, { index: index + 1, image }]));
    renderCommitResult(panel, results, (imageId) => {
      const known = positions.get(imageId);
      if (!known) return "Photo";
      const label = known.image.metadata?.label;
      return `Photo ${known.index}${label ? ` · ${label}` : ""}`;
    }, state.session?.patient?.name, (imageId) => positions.get(imageId)?.index ?? Number.MAX_SAFE_INTEGER);
    endSession("committed");
  }

  function endSession(status) {
    if (state.ended && state.ended !== "open") {
      renderStatus(status === "committed" ? "committed" : state.ended);
      return;
    }
    state.ended = status;
    commit.close();
    events.close();
    qr.disable();
    renderStatus(status);
    gallery.setReadOnly(status);
    const copy = {
      committed: ["Saved to the record", "The photos are in the patient's record and have been deleted from consultcam. The phone has been told."],
      cancelled: ["Session cancelled", "The photos were deleted and nothing was saved to the record."],
      expired: ["Session expired", "It was closed after a period with no activity. Its photos were deleted and nothing was saved to the record."],
    }[status] || ["Session ended", "This session is no longer open."];
    setText($("#ended-title"), copy[0]);
    setText($("#ended-text"), copy[1]);
    show($("#ended-card"), true);
    show($(".commit-card"), false);
    show($(".phone-card"), false);
    show($("#live"), false);
    if (status !== "committed") {
      gallery.clear();
      $("#main").dataset.ended = "true"; // nothing left to show but the outcome
    }
    renderCount();
    announce(copy[0]);
  }

  function fatal(err) {
    if (err instanceof ApiError && err.status === 401) {
      window.location.reload(); // the server shows the sign-in page
      return;
    }
    events.close();
    const notFound = err instanceof ApiError && (err.status === 404 || err.status === 403);
    setText($("#pb-name"), notFound ? "Session not found" : "Could not load the session");
    show($(".pb-facts"), false);
    show($("#session-status"), false);
    state.ended = "error";
    qr.disable();
    show($(".phone-card"), false);
    $("#main").dataset.ended = "true";
    show($(".commit-card"), false);
    show($("#gallery-empty"), false);
    setText($("#ended-title"), notFound ? "Session not found" : "Could not load the session");
    setText($("#ended-text"), notFound
      ? "It may have been committed, cancelled or expired. Start a new session for this patient."
      : (err?.detail || "Reload the page to try again."));
    show($("#ended-card"), true);
    show($("#live"), false);
    renderStatus("error");
  }
}

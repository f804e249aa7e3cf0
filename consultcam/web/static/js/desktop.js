// The desktop page: `/` shows the start form; `/sessions/{id}` shows the patient banner, the phone panel,
// consent, the live gallery with its details panel, uploads from this computer, and commit. State comes from
// GET /api/sessions/{id}; changes arrive over SSE.

import { ApiError, api } from "./api.js";
import { CommitDialog, renderCommitResult } from "./commit-dialog.js";
import { ConsentPanel } from "./consent-dialog.js";
import { DesktopUpload } from "./desktop-upload.js";
import { $, announce, h, readPageData, setText, show } from "./dom.js";
import { EventStream } from "./events.js";
import { formatBirthDateWithAge, plural } from "./format.js";
import { Gallery } from "./gallery.js";
import { listFields, metadataGaps, summarise } from "./metadata-chips.js";
import { MetadataPanel } from "./metadata-panel.js";
import { QrPanel } from "./qr-panel.js";
import { wireSignOut } from "./sign-out.js";
import { PAIRING_STASH, startForm } from "./start-form.js";

const page = readPageData();
const config = { maxImages: 50, warnImages: 20, ...(page.config || {}) };
window.__consultcam = { events: null };

wireSignOut($("#sign-out-form"), { onSignedOut: () => window.__consultcam.events?.close() });
if (page.sessionId) sessionPage(page.sessionId);
else startForm(page.launch || {});

function sessionPage(sessionId) {
  const COMMIT_HINT = $("#commit-hint").textContent;
  const state = { session: null, phone: null, ended: null, ready: false, buffer: [], pairingBusy: false, viewer: null };
  const shownAt = {};
  const required = () => state.session?.requiredMetadata || [];
  // A snapshot fetched while newer news of a photo arrived must not put the older state back: each change
  // seen (event or own save) is stamped, and reload() skips photos stamped after it asked.
  let seq = 0;
  const stamped = new Map();
  const fresh = (image) => { stamped.set(image.id, ++seq); gallery.upsert(image); };
  let markLoaded;
  const loaded = new Promise((resolve) => { markLoaded = resolve; });

  const qr = new QrPanel({ onNewCode: () => newPairing(), onRevoke: () => confirmRevoke() });
  const gallery = new Gallery($("#gallery"), {
    fetchImage: (imageId) => api.getImage(sessionId, imageId),
    downloadUrl: (imageId) => api.downloadUrl(sessionId, imageId),
    onDelete: (image, position) => confirmDelete(image, position),
    onLabel: async (image, label) => {
      const updated = await api.updateImage(sessionId, image.id, { metadata: { label: label || null } });
      fresh(updated);
    },
    onChange: () => renderCount(),
    onOpen: (image, index) => openViewer(index),
    onSelection: () => renderSelection(),
    onCurrent: () => { if (!gallery.selected.size) panel.show(targets()); },
    // When each photo first became visible (wall-clock ms), for bench/capture_latency.py.
    onShown: (imageId) => { shownAt[imageId] ??= performance.timeOrigin + performance.now(); },
  });
  const panel = new MetadataPanel({
    sessionId,
    root: $("#inspector"),
    required,
    onSaved: (image) => fresh(image),
    onTerminology: (terminology) => gallery.setTerminology(terminology),
    position: (id) => gallery.position(id),
    latest: (id) => gallery.get(id),
  });
  const consent = new ConsentPanel({
    sessionId,
    getSession: () => state.session,
    onRecorded: (session) => {
      state.session = { ...state.session, consent: session?.consent ?? state.session?.consent };
      consent.render(state.session);
    },
  });
  const commit = new CommitDialog({
    sessionId,
    getImages: () => gallery.images(),
    getSession: () => state.session,
    required,
    position: (id) => gallery.position(id),
    onJump: (imageId, fields) => jumpTo(imageId, fields),
    onCommitted: (results) => committed(results),
    onConflict: () => reload(),
  });
  const upload = new DesktopUpload({
    sessionId,
    zone: $("#drop-zone"),
    input: $("#upload-input"),
    tray: $("#upload-tray"),
    settings: { maxImages: config.maxImages },
    enabled: () => !state.ended,
    remaining: () => config.maxImages - gallery.size,
    // Files dropped while the page is still loading wait for the session, then for consent if it is needed.
    ensureConsent: async (count) => {
      await loaded;
      if (state.ended) return false;
      return state.session?.consentRequired && !state.session?.consent ? consent.ask(count) : true;
    },
    onUploaded: (image) => {
      if (state.ended) return;
      const isNew = !gallery.has(image.id);
      fresh(image);
      if (isNew) announce(`Photo added. ${plural(gallery.size, "photo")} in this session.`);
    },
  });
  const events = new EventStream(api.eventsUrl(sessionId), {
    onEvent: (event) => (state.ready ? handleEvent(event) : state.buffer.push(event)),
    onState: renderLive,
    onReconnected: () => reload(),
    check: () => api.getSession(sessionId),
    onFatal: (err) => fatal(err),
  });
  window.__consultcam = { events, gallery, panel, upload, state, shownAt };

  $("#commit-btn").addEventListener("click", () => commit.open());
  $("#cancel-btn").addEventListener("click", () => confirmCancel());
  $("#live-refresh").addEventListener("click", () => { events.reconnectNow(); reload(); });
  $("#select-all").addEventListener("change", (event) => gallery.selectAll(event.target.checked));
  $("#wrong-patient-new-code").addEventListener("click", () => { show($("#wrong-patient"), false); newPairing(); });
  $("#wrong-patient-cancel").addEventListener("click", () => confirmCancel());
  $("#wrong-patient-dismiss").addEventListener("click", () => {
    show($("#wrong-patient"), false);
    $("#qr-new").focus();
  });
  $("#paired-elsewhere-new-code").addEventListener("click", () => { show($("#paired-elsewhere"), false); newPairing(); });
  $("#paired-elsewhere-dismiss").addEventListener("click", () => {
    show($("#paired-elsewhere"), false);
    $("#qr-new").focus();
  });
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

  // The stream opens first and buffers, so nothing between the snapshot and the subscription is lost.
  events.start();
  load();

  async function load() {
    try {
      const session = await api.getSession(sessionId);
      applySession(session);
      state.ready = true;
      markLoaded();
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
    const asked = seq;
    try {
      const session = await api.getSession(sessionId);
      const ids = new Set((session.images || []).map((image) => image.id));
      for (const image of gallery.images()) {
        if (!ids.has(image.id) && !state.ended && !((stamped.get(image.id) ?? 0) > asked)) gallery.remove(image.id);
      }
      const newer = (image) => (stamped.get(image.id) ?? 0) > asked;
      session.images = (session.images || [])
        .filter((image) => !newer(image) || gallery.has(image.id)) // deleted since: stays deleted
        .map((image) => (newer(image) ? { ...gallery.get(image.id), urls: image.urls } : image));
      applySession(session);
    } catch (err) {
      if (err instanceof ApiError && !err.retryable) fatal(err);
    }
  }

  function applySession(session) {
    state.session = session;
    renderBanner(session);
    gallery.setRequired(session.requiredMetadata || []);
    for (const image of session.images || []) gallery.upsert(image);
    consent.render(session);
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
    renderLastCommit(session);
    if (session.status !== "open" && session.status !== "committing") endSession(session.status);
    renderCount();
    panel.show(targets());
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
        show($("#wrong-patient"), false);
        show($("#paired-elsewhere"), false);
        announce("Phone connected.");
        break;
      case "phone.revoked":
        state.phone = null;
        if (state.session) state.session.phone = null;
        if (state.ended) break;
        if (data.reason === "wrong-patient") {
          wrongPatient();
        } else if (data.reason === "paired-elsewhere") {
          pairedElsewhere();
        } else if (data.reason === "revoked") {
          // This desktop (or another one) signed it out: offer a fresh code straight away.
          qr.signedOut("revoked");
          announce("The phone was signed out.");
          newPairing();
        } else {
          // An ended session says so (session.expired) before it signs the phone out: no new code then.
          qr.waiting();
        }
        break;
      case "consent.recorded":
        if (data.consent) consent.recorded(data.consent);
        break;
      case "image.added":
      case "image.updated":
      case "image.analysed": {
        // Each carries the whole image: whichever comes first puts it in the gallery, by id, and a later
        // one replaces it (image.analysed may overtake image.added; the gallery keeps the later analysis).
        if (!data.image || state.ended) break;
        const isNew = !gallery.has(data.image.id);
        const before = gallery.get(data.image.id)?.analysis?.status;
        fresh(data.image);
        const image = gallery.get(data.image.id);
        if (!isNew) state.viewer?.update(image);
        if (isNew) announce(`New photo received. ${plural(gallery.size, "photo")} in this session.`);
        else if (event.type === "image.analysed" && before !== image.analysis?.status) announceAnalysis(image);
        renderCount();
        break;
      }
      case "image.deleted":
        stamped.set(data.imageId, ++seq);
        gallery.remove(data.imageId);
        state.viewer?.remove(data.imageId);
        break;
      case "commit.started":
        commit.started(data.total ?? gallery.size);
        commit.onProgress(0, data.total ?? gallery.size);
        renderStatus("committing");
        break;
      case "commit.progress":
        commit.onProgress(data.done ?? 0, data.total ?? gallery.size);
        break;
      case "session.committed":
        if (!commit.running) committed(data.results || [], { byPhone: commit.external });
        break;
      case "commit.failed":
        commit.failed(data.detail || data.error, { interrupted: Boolean(data.interrupted) });
        renderStatus("open");
        reload(); // the commit card shows how the last commit ended
        break;
      case "session.expired":
        endSession(data.reason === "cancelled" ? "cancelled" : "expired");
        break;
      default:
        break;
    }
  }

  /** A description that arrives (or fails) is said once, briefly; its text is in the details panel. */
  function announceAnalysis(image) {
    const position = gallery.position(image.id);
    if (image.analysis?.status === "done") announce(`AI description ready for photo ${position}. It is in Details.`);
    else if (image.analysis?.status === "failed") announce(`No AI description for photo ${position}.`);
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

  /** An open session whose last commit did not finish says so in the commit card (issue 10): interrupted
   * (consultcam stopped mid-commit: not known what reached the record) or failed, in the server's words. */
  function renderLastCommit(session) {
    const hint = $("#commit-hint");
    const last = session.status === "open" ? session.lastCommit : null;
    const unfinished = ["interrupted", "failed"].includes(last?.status) ? last.status : "";
    hint.dataset.lastCommit = unfinished;
    hint.classList.toggle("notice", Boolean(unfinished));
    hint.classList.toggle("notice-warn", Boolean(unfinished));
    setText(hint, unfinished ? last.detail : COMMIT_HINT);
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
    renderReadiness();
    const download = $("#download-all");
    if (count && !state.ended) {
      download.href = api.sessionDownloadUrl(sessionId);
      download.removeAttribute("aria-disabled");
    } else {
      download.removeAttribute("href");
      download.setAttribute("aria-disabled", "true");
    }
    show($("#gallery-tools"), !state.ended);
    $("#select-all").disabled = count === 0;
    renderSelection();
  }

  /** Say in the commit card whether every photo has what commit requires. */
  function renderReadiness() {
    const line = $("#commit-ready");
    const images = gallery.images();
    const { gaps, fields } = metadataGaps(images, required());
    if (!images.length || state.ended) {
      line.replaceChildren();
      delete line.dataset.tone;
      return;
    }
    if (gaps.length) {
      line.dataset.tone = "warn";
      line.replaceChildren(`${gaps.length === 1 ? "1 photo needs" : `${gaps.length} photos need`} a ${listFields(fields)}.`);
    } else {
      line.dataset.tone = "ok";
      line.replaceChildren(required().length ? `Every photo has its ${listFields(required())}.` : "Ready to commit.");
    }
  }

  function targets() {
    const selection = gallery.selection();
    if (selection.length) return selection;
    return gallery.current ? [gallery.current] : [];
  }

  function renderSelection() {
    const count = gallery.selected.size;
    const all = $("#select-all");
    all.checked = count > 0 && count === gallery.size;
    all.indeterminate = count > 0 && count < gallery.size;
    setText($("#select-all-text"), count ? `${count} selected` : "Select all");
    $("#select-all").setAttribute("aria-label", count ? `${count} of ${gallery.size} selected. Select all` : "Select all photos");
    panel.show(targets());
    renderReadiness();
  }

  // -- actions -----------------------------------------------------------------------------------------

  /** From the commit dialog's gap list: show that photo in the details panel and put the keyboard there. */
  function jumpTo(imageId, fields) {
    gallery.select([]);
    gallery.setCurrent(imageId, { scroll: true });
    panel.show(targets());
    panel.focusField(fields[0] || "bodySite");
  }

  async function openViewer(index) {
    const images = gallery.images();
    const image = images[index];
    if (!image) return;
    try {
      const { openImageViewer } = await import("./image-viewer.js");
      state.viewer = openImageViewer({
        sessionId,
        images,
        index,
        readOnly: Boolean(state.ended),
        onSaved: (updated) => fresh(updated),
        onClose: (last) => {
          state.viewer = null;
          // Back on the photo last shown, so the keyboard carries on from there.
          const id = last?.id && gallery.has(last.id) ? last.id : image.id;
          if (gallery.has(id)) gallery.setCurrent(id, { focus: true, scroll: true });
        },
      });
    } catch (err) {
      console.error("The image viewer could not open", err);
      window.open(image.urls?.full || api.downloadUrl(sessionId, image.id), "_blank", "noopener");
    }
  }

  function wrongPatient() {
    qr.signedOut("wrong-patient");
    qr.idle("Make a new code only once you are sure of the patient.");
    const count = gallery.size;
    setText($("#wrong-patient-photos"), count
      ? `The ${plural(count, "photo")} already here ${count === 1 ? "was" : "were"} not deleted: check ${count === 1 ? "it shows" : "they show"} this patient before committing.`
      : "");
    show($("#wrong-patient"), true);
    announce("The phone said this is not the right patient. It has been signed out.");
  }

  /** The phone scanned another session's code: it left this session, which is told plainly. */
  function pairedElsewhere() {
    qr.signedOut("paired-elsewhere");
    qr.idle("Make a new code when the phone for this patient is ready.");
    const count = gallery.size;
    setText($("#paired-elsewhere-photos"), count
      ? `The ${plural(count, "photo")} it sent before ${count === 1 ? "stays" : "stay"} in this session.`
      : "");
    show($("#paired-elsewhere"), true);
    announce("The phone was paired with another session and has been signed out of this one.");
  }

  function confirmRevoke() {
    const dialog = $("#revoke-dialog");
    dialog.returnValue = "";
    show($("#revoke-error"), false);
    dialog.showModal();
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "revoke") return;
      try {
        await api.revokePhone(sessionId);
        state.phone = null;
        if (state.session) state.session.phone = null;
        qr.signedOut("revoked");
        announce("The phone was signed out.");
        newPairing();
      } catch (err) {
        announce(err?.detail || "The phone could not be signed out.");
        setText($("#revoke-error"), err instanceof ApiError ? err.detail : "The phone could not be signed out. Try again.");
        show($("#revoke-error"), true);
        dialog.showModal();
        reload();
      }
    }, { once: true });
  }

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
        stamped.set(image.id, ++seq);
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

  function committed(results, { byPhone = false } = {}) {
    const resultPanel = $("#commit-result");
    if (state.ended === "committed" && !resultPanel.hidden) return;
    const positions = new Map(gallery.images().map((image, index) => [image.id, { index: index + 1, image }]));
    renderCommitResult(resultPanel, results, (imageId) => {
      const known = positions.get(imageId);
      if (!known) return "Photo";
      // Named by its label, else by where it was taken ("Photo 2 · Left hand").
      const name = known.image.metadata?.label || summarise(known.image.metadata, gallery.terminology, known.image.words);
      return `Photo ${known.index}${name ? ` · ${name}` : ""}`;
    }, state.session?.patient?.name, (imageId) => positions.get(imageId)?.index ?? Number.MAX_SAFE_INTEGER, { byPhone });
    endSession("committed");
  }

  function endSession(status) {
    if (state.ended && state.ended !== "open") {
      renderStatus(status === "committed" ? "committed" : state.ended);
      return;
    }
    state.ended = status;
    commit.close();
    consent.close();
    state.viewer?.close();
    events.close();
    qr.disable();
    renderStatus(status);
    gallery.setReadOnly(status);
    panel.setReadOnly();
    show($("#wrong-patient"), false);
    show($("#paired-elsewhere"), false);
    const copy = {
      committed: ["Saved to the record", "The photos are in the patient's record and have been deleted from consultcam. The phone has been told."],
      cancelled: ["Session cancelled", "The photos were deleted and nothing was saved to the record."],
      expired: ["Session expired", "It was closed after a period with no activity. Its photos were deleted and nothing was saved to the record."],
    }[status] || ["Session ended", "This session is no longer open."];
    setText($("#ended-title"), copy[0]);
    setText($("#ended-text"), copy[1]);
    show($("#ended-card"), true);
    for (const selector of [".commit-card", ".phone-card", ".consent-card", "#live", "#inspector", "#upload-tray"]) show($(selector), false);
    $("#main").dataset.phase = "ended";
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
    markLoaded();
    const notFound = err instanceof ApiError && (err.status === 404 || err.status === 403);
    setText($("#pb-name"), notFound ? "Session not found" : "Could not load the session");
    show($(".pb-facts"), false);
    show($("#session-status"), false);
    state.ended = "error";
    qr.disable();
    for (const selector of [".phone-card", ".commit-card", ".consent-card", "#gallery-empty", "#live", "#inspector"]) show($(selector), false);
    $("#main").dataset.ended = "true";
    $("#main").dataset.phase = "ended";
    setText($("#ended-title"), notFound ? "Session not found" : "Could not load the session");
    setText($("#ended-text"), notFound
      ? "It may have been committed, cancelled or expired. Start a new session for this patient."
      : (err?.detail || "Reload the page to try again."));
    show($("#ended-card"), true);
    renderStatus("error");
  }
}

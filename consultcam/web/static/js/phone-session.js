// The session's life on this phone: pairing with the code in the URL (or the error screen saying why not),
// the first screen after it (consent, photos kept from before a reload, or the camera), and the end: on
// commit, session end or expiry, sign-out and "Not this patient?" everything stops and every photo is
// forgotten, in memory and in IndexedDB, before the final screen says what happened and what to do next.

import { ApiError } from "./api.js";
import { consentNeeded } from "./consent.js";
import { announce, setText, show } from "./dom.js";
import { plural } from "./format.js";
import { loadTerminology } from "./metadata-chips.js";
import { describePairingError, forgetPairing, redeem } from "./pairing.js";
import { endingCopy } from "./phone-endings.js";
import { applySettings, pendingPhotos } from "./phone-model.js";
import { releasePhoto } from "./phone-photos.js";
import { renderBanner } from "./phone-screens.js";
import { PhotoStore, purgeStale, wipeSession } from "./photo-store.js";
import { terminateResizer } from "./resize.js";

/**
 * @param {{state: object, els: object, token: string, camera: import("./camera.js").Camera,
 *   grid: import("./review.js").ReviewGrid, details: import("./photo-details.js").PhotoDetails,
 *   phoneCommit: import("./phone-commit.js").PhoneCommit,
 *   wrongPatient: import("./wrong-patient.js").WrongPatientDialog,
 *   screens: {showScreen(name: string): void, showError(copy: object): void,
 *     showEnding(kind: string, copy: object): void},
 *   render(): void, startEvents(): void, restorePhotos(): Promise<object[]>, uploadAll(): void}} parts
 *   token: the pairing code from the page's URL
 * @returns {{pair(): Promise<void>, finish(kind: string, reason?: string, options?: {notified?: boolean}): void}}
 */
export function createSessionFlow({ state, els, token, camera, grid, details, phoneCommit, wrongPatient, screens, render, startEvents, restorePhotos, uploadAll }) {
  /** Redeem the pairing code; a pairing error shows the error screen, with Retry when trying again can help. */
  async function pair() {
    try {
      const { session, captureSettings } = await redeem(token);
      await onPaired(session, captureSettings);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      const copy = describePairingError(err);
      screens.showError({ ...copy, retry: copy.retryable ? () => { screens.showScreen("pairing"); pair(); } : null });
    }
  }

  async function onPaired(session, captureSettings) {
    state.session = session;
    applySettings(state, session, captureSettings);
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
      screens.showScreen("consent");
      announce(`Connected. Ask ${session.patient?.name || "the patient"} for consent before the first photo.`);
    } else if (restored.length) {
      showRestored(restored);
    } else {
      screens.showScreen("capture");
      announce(`Connected. Taking photos for ${session.patient?.name || "the patient"}.`);
    }
  }

  /** The review screen with the photos kept from before a reload; those that were being sent are sent again. */
  function showRestored(restored) {
    const queued = restored.filter((photo) => photo.queued);
    setText(els.restoredNote, queued.length
      ? `${plural(restored.length, "photo")} kept from before the page reloaded. Sending ${queued.length === 1 ? "it" : "them"} now.`
      : `${plural(restored.length, "photo")} kept from before the page reloaded, ready to upload.`);
    show(els.restoredNote, true);
    screens.showScreen("review");
    announce(els.restoredNote.textContent);
    if (queued.length) uploadAll();
  }

  /**
   * End of the session on this phone: stop everything and forget every photo, in memory and in IndexedDB.
   * Only the first call counts.
   * @param {"committed"|"ended"|"revoked"|"wrong-patient"|"paired-elsewhere"} kind (phone-endings.js)
   * @param {string} [reason] why the session ended ("cancelled", "expired", …)
   * @param {{notified?: boolean}} [options] notified: whether the server took this phone's sign-out
   */
  function finish(kind, reason, { notified = true } = {}) {
    if (state.ended) return;
    state.ended = true;
    state.abort.abort();
    state.events?.close();
    camera.stop();
    terminateResizer();
    phoneCommit.close();
    wrongPatient.close();
    const unsent = pendingPhotos(state).length;
    for (const photo of state.photos) releasePhoto(photo);
    state.photos = [];
    state.serverImages.clear();
    details.clear();
    if (state.store) state.store.clear();
    else if (state.session) wipeSession(state.session.id);
    forgetPairing();
    const copy = endingCopy(kind, { name: state.session?.patient?.name || "the patient", unsent, reason, notified });
    grid.sync([]);
    screens.showEnding(kind, copy);
  }

  return { pair, finish };
}

// The phone on the desktop session page: making pairing codes (or showing the one the start form made),
// the phone connecting, and the phone leaving: signed out here, by another desktop, because the phone
// said "not this patient", or because it scanned another session's code. The QR card itself is
// qr-panel.js; this module decides what it shows.

import { ApiError, api } from "./api.js";
import { confirmCancel } from "./desktop-ending.js";
import { $, announce, setText, show } from "./dom.js";
import { plural } from "./format.js";
import { PAIRING_STASH } from "./start-form.js";

/** Wire the buttons of the "wrong patient" and "paired elsewhere" notices. */
export function wirePhoneNotices(page) {
  $("#wrong-patient-new-code").addEventListener("click", () => { show($("#wrong-patient"), false); newPairing(page); });
  $("#wrong-patient-cancel").addEventListener("click", () => confirmCancel(page));
  $("#wrong-patient-dismiss").addEventListener("click", () => {
    show($("#wrong-patient"), false);
    $("#qr-new").focus();
  });
  $("#paired-elsewhere-new-code").addEventListener("click", () => { show($("#paired-elsewhere"), false); newPairing(page); });
  $("#paired-elsewhere-dismiss").addEventListener("click", () => {
    show($("#paired-elsewhere"), false);
    $("#qr-new").focus();
  });
}

/** The first code once the session is loaded with no phone: the start form's (if still fresh) or a new one. */
export function firstPairing(page) {
  const stashed = takeStashedPairing(page.sessionId);
  if (stashed) page.qr.showPairing(stashed);
  else newPairing(page);
}

/** The pairing the start form made for this session, if it has 5 s or more to run; taken only once. */
function takeStashedPairing(sessionId) {
  try {
    const stash = JSON.parse(sessionStorage.getItem(PAIRING_STASH) || "null");
    sessionStorage.removeItem(PAIRING_STASH);
    if (stash?.sessionId === sessionId && Date.parse(stash.pairing?.expiresAt) > Date.now() + 5000) return stash.pairing;
  } catch { /* a stale or foreign stash is ignored */ }
  return null;
}

/** Ask for a new pairing code (one request at a time; none once the session has ended). */
export async function newPairing(page) {
  const { qr, state } = page;
  if (state.pairingBusy || state.ended) return;
  state.pairingBusy = true;
  qr.loading();
  try {
    qr.showPairing(await api.newPairing(page.sessionId));
  } catch (err) {
    qr.error(err instanceof ApiError ? err.detail : "A code could not be made.");
    if (err instanceof ApiError && err.status === 409) page.reload();
  } finally {
    state.pairingBusy = false;
  }
}

/** Event `phone.paired`: the phone is connected. */
export function phonePaired(page, phone) {
  const { state } = page;
  state.phone = phone;
  if (state.session) state.session.phone = phone;
  page.qr.phoneConnected(phone);
  show($("#wrong-patient"), false);
  show($("#paired-elsewhere"), false);
  announce("Phone connected.");
}

/** Event `phone.revoked`, with the reason the server gave. */
export function phoneRevoked(page, reason) {
  const { state } = page;
  state.phone = null;
  if (state.session) state.session.phone = null;
  if (state.ended) return;
  if (reason === "wrong-patient") {
    wrongPatient(page);
  } else if (reason === "paired-elsewhere") {
    pairedElsewhere(page);
  } else if (reason === "revoked") {
    // This desktop (or another one) signed it out: offer a fresh code straight away.
    page.qr.signedOut("revoked");
    announce("The phone was signed out.");
    newPairing(page);
  } else {
    // An ended session says so (session.expired) before it signs the phone out: no new code then.
    page.qr.waiting();
  }
}

/** The phone left for a `reason` that needs the clinician's eye: the QR card waits for a new code, and
 *  the `#<reason>` notice says what became of the photos already here (`photos(count)`, when any). */
function signedOutNotice(page, reason, { hint, photos, message }) {
  page.qr.signedOut(reason);
  page.qr.idle(hint);
  const count = page.gallery.size;
  setText($(`#${reason}-photos`), count ? photos(count) : "");
  show($(`#${reason}`), true);
  announce(message);
}

function wrongPatient(page) {
  signedOutNotice(page, "wrong-patient", {
    hint: "Make a new code only once you are sure of the patient.",
    photos: (count) => `The ${plural(count, "photo")} already here ${count === 1 ? "was" : "were"} not deleted: check ${count === 1 ? "it shows" : "they show"} this patient before committing.`,
    message: "The phone said this is not the right patient. It has been signed out.",
  });
}

/** The phone scanned another session's code: it left this session, which is told plainly. */
function pairedElsewhere(page) {
  signedOutNotice(page, "paired-elsewhere", {
    hint: "Make a new code when the phone for this patient is ready.",
    photos: (count) => `The ${plural(count, "photo")} it sent before ${count === 1 ? "stays" : "stay"} in this session.`,
    message: "The phone was paired with another session and has been signed out of this one.",
  });
}

/** "Sign phone out" in the QR card: confirmed in a dialog; a failure is shown in the dialog, reopened. */
export function confirmRevoke(page) {
  const { state } = page;
  const dialog = $("#revoke-dialog");
  dialog.returnValue = "";
  show($("#revoke-error"), false);
  dialog.showModal();
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "revoke") return;
    try {
      await api.revokePhone(page.sessionId);
      state.phone = null;
      if (state.session) state.session.phone = null;
      page.qr.signedOut("revoked");
      announce("The phone was signed out.");
      newPairing(page);
    } catch (err) {
      announce(err?.detail || "The phone could not be signed out.");
      setText($("#revoke-error"), err instanceof ApiError ? err.detail : "The phone could not be signed out. Try again.");
      show($("#revoke-error"), true);
      dialog.showModal();
      page.reload();
    }
  }, { once: true });
}

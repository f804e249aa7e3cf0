// Which of the phone's screens shows (pairing, error, consent, capture, review, details, done, final), what a
// change of screen starts and stops (the camera runs only on the capture screen; leaving the details screen
// lets go of its photo), where focus goes (the new screen's heading, so a screen reader starts there), and
// the words of the message screens: an error, "N photos sent", the ending, and the patient banner.

import { $, announce, setText, show } from "./dom.js";
import { formatBirthDateWithAge, plural } from "./format.js";
import { remainingCapacity } from "./phone-model.js";

const SCREENS = ["pairing", "error", "consent", "capture", "review", "details", "done", "final"];

/**
 * @param {{state: object, els: object, viewfinder: import("./viewfinder.js").Viewfinder,
 *   details: import("./photo-details.js").PhotoDetails, consentForm: import("./consent.js").ConsentForm,
 *   render(): void}} parts
 */
export function createScreens({ state, els, viewfinder, details, consentForm, render }) {
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

  /**
   * The error screen.
   * @param {{icon?: string, title: string, text: string, next: string, retry?: (() => void) | null}} copy
   *   icon: a sprite name ("wifi-off" and "clock" read as information, the rest as errors); retry: shows a
   *   Retry button that calls it
   */
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

  /** "N photos sent" after a batch with nothing left on the phone; "Session full" when it can take no more. */
  function showDone() {
    const sent = state.sentCount;
    const total = state.serverImages.size;
    const full = remainingCapacity(state) <= 0;
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

  /**
   * The final screen, and the banner's badge saying how the session ended.
   * @param {string} kind the ending (phone-endings.js), kept on the banner as data-ended
   * @param {{title: string, text: string, next: string, tone: string, icon: string, badge: string}} copy
   */
  function showEnding(kind, copy) {
    setText($("#final-title"), copy.title);
    setText($("#final-text"), copy.text);
    setText($("#final-next"), copy.next);
    const finalIcon = $("#final-icon");
    finalIcon.className = `message-icon message-icon-${copy.tone}`;
    finalIcon.querySelector("use").setAttribute("href", `#i-${copy.icon}`);
    setText(els.pbState, copy.badge);
    els.banner.dataset.ended = kind;
    showScreen("final");
    announce(copy.title);
  }

  return { showScreen, showError, showDone, showEnding };
}

/** The patient banner: name, NHI and date of birth with age, or "not recorded". */
export function renderBanner(patient) {
  setText($("#pb-name"), patient.name || "Unnamed patient");
  setText($("#pb-nhi"), patient.nhi || "not recorded");
  setText($("#pb-dob"), patient.birthDate ? formatBirthDateWithAge(patient.birthDate) : "not recorded");
}

// Consent before the first photo (issue 5): what the photos may be used for and who agreed, recorded with
// the capture session (PUT /api/sessions/{id}/consent) and carried into each committed resource's note. Asked
// only when the session requires it (CONSULTCAM_CONSENT_REQUIRED) and nobody has recorded it yet: the
// clinician may already have done so on the desktop, or this phone before a reload.

import { ApiError, api } from "./api.js";
import { $, setText, show } from "./dom.js";

/** Plain words for the recorded consent, as the phone shows it. */
export const SCOPE_WORDS = {
  clinical: "clinical record only",
  teaching: "record and teaching",
  publication: "record, teaching and publication",
};
export const GIVER_WORDS = { patient: "the patient", guardian: "a parent or guardian" };

/** "Consent: clinical record only · given by the patient" (or "" when none is recorded). */
export function describeConsent(consent) {
  if (!consent) return "";
  const scope = SCOPE_WORDS[consent.scope] || consent.scope;
  const giver = GIVER_WORDS[consent.givenBy];
  return giver ? `Consent: ${scope} · given by ${giver}` : `Consent: ${scope}`;
}

/** Whether the phone must ask for consent before any photo is taken. */
export function consentNeeded(session, settings) {
  const required = settings?.consentRequired ?? session?.consentRequired ?? false;
  return Boolean(required) && !session?.consent;
}

export class ConsentForm {
  /** @param {{onRecorded(consent, session): void, onSessionGone(err): void}} hooks */
  constructor({ onRecorded, onSessionGone }) {
    this.hooks = { onRecorded, onSessionGone };
    this.form = $("#consent-form");
    this.error = $("#consent-error");
    this.button = $("#consent-accept");
    this.buttonText = $("#consent-accept-text");
    this.sessionId = null;
    this.busy = false;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  /** Get the form ready for `session` (the choices stay as the user left them). */
  prepare(session) {
    this.sessionId = session.id;
    show(this.error, false);
  }

  async submit() {
    if (this.busy || !this.sessionId) return;
    const data = new FormData(this.form);
    const consent = { scope: data.get("scope") || "clinical", givenBy: data.get("givenBy") || "patient" };
    this.busy = true;
    this.button.disabled = true;
    setText(this.buttonText, "Saving consent…");
    show(this.error, false);
    try {
      const session = await api.recordConsent(this.sessionId, consent);
      this.hooks.onRecorded(session?.consent || { ...consent, recordedBy: "phone" }, session);
    } catch (err) {
      // Signed out, or the session was committed or cancelled meanwhile: the page finds out which.
      if (err instanceof ApiError && [401, 403, 404, 409].includes(err.status)) {
        this.hooks.onSessionGone(err);
        return;
      }
      setText(this.error, err instanceof ApiError && err.status
        ? err.detail
        : "The consent could not be saved: the phone is not connected. Check the Wi-Fi and tap again.");
      show(this.error, true);
    } finally {
      this.busy = false;
      this.button.disabled = false;
      setText(this.buttonText, "Consent given");
    }
  }
}

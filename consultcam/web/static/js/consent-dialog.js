// Consent on the desktop: the side-panel card shows what was recorded (scope, given by, when, on the phone or
// on this computer), and a dialog records it (`PUT /api/sessions/{id}/consent`) with the same choices as the
// phone. The dialog is also the gate before a desktop upload when the session needs consent first.

import { ApiError, api } from "./api.js";
import { $, announce, h, icon, setText, show } from "./dom.js";
import { formatTime } from "./format.js";

/** The consent scopes (CONTRACT.md; FHIR note "agreed use: …") in the words both pages use. */
export const CONSENT_SCOPES = {
  clinical: { title: "Clinical record only", text: "Seen only by the people caring for this patient." },
  teaching: { title: "Clinical record and teaching", text: "May also teach health professionals, without the patient's name." },
  publication: { title: "Record, teaching and publication", text: "May also be published, for example in a journal, without the patient's name." },
};
export const CONSENT_GIVERS = { patient: "The patient", guardian: "Parent or guardian" };

export class ConsentPanel {
  /**
   * @param {{sessionId: string, getSession(): object, onRecorded(session: object): void}} deps
   *   onRecorded receives the session returned by the server (consent set).
   */
  constructor(deps) {
    this.deps = deps;
    this.card = $("#consent-card");
    this.body = $("#consent-body");
    this.editBtn = $("#consent-edit");
    this.dialog = $("#consent-dialog");
    this.form = $("#consent-form");
    this.error = $("#consent-error");
    this.submit = $("#consent-submit");
    this.pending = null; // resolve(boolean) of ask()
    this.busy = false;
    this.editBtn.addEventListener("click", () => this.open());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    $("#consent-cancel").addEventListener("click", () => { if (!this.busy) this.dialog.close("cancel"); });
    this.dialog.addEventListener("cancel", (event) => { if (this.busy) event.preventDefault(); });
    this.dialog.addEventListener("close", () => {
      const resolve = this.pending;
      this.pending = null;
      resolve?.(this.dialog.returnValue === "recorded");
    });
  }

  /** Show the session's consent `{scope, givenBy, recordedAt, recordedBy} | null` in the card. */
  render(session) {
    const consent = session?.consent || null;
    const required = session?.consentRequired !== false;
    this.card.dataset.state = consent ? "recorded" : required ? "missing" : "optional";
    setText(this.editBtn, consent ? "Change" : "Record consent");
    this.editBtn.setAttribute("aria-label", consent ? "Change the recorded consent" : "Record consent");
    this.editBtn.className = consent ? "btn btn-quiet btn-sm" : "btn btn-secondary btn-sm";
    if (!consent) {
      this.body.replaceChildren(
        h("p", { class: "consent-status" }, icon(required ? "alert" : "info"),
          h("span", {}, required ? "Not recorded yet" : "Not recorded")),
        h("p", { class: "hint" }, required
          ? "The phone asks before its first photo. Photos added on this computer ask here first."
          : "This practice does not require it before photos are taken."),
      );
      return;
    }
    const scope = CONSENT_SCOPES[consent.scope] || { title: consent.scope, text: "" };
    const where = consent.recordedBy === "phone" ? "on the phone" : "on this computer";
    this.body.replaceChildren(
      h("p", { class: "consent-status" }, icon("check-circle"), h("span", { "data-testid": "consent-scope" }, scope.title)),
      h("dl", { class: "consent-facts" },
        h("div", {}, h("dt", {}, "Given by"), h("dd", {}, CONSENT_GIVERS[consent.givenBy] || consent.givenBy || "Not stated")),
        h("div", {}, h("dt", {}, "Recorded"), h("dd", {}, `${formatTime(consent.recordedAt)} ${where}`))),
    );
  }

  /** The consent.recorded event (from the phone or another desktop). */
  recorded(consent) {
    const session = this.deps.getSession();
    if (!session) return;
    session.consent = consent;
    this.render(session);
    announce(`Consent recorded: ${CONSENT_SCOPES[consent?.scope]?.title || "recorded"}.`);
  }

  /** Open the dialog to record (or change) consent. */
  open() {
    return this.show({ purpose: "record" });
  }

  /** Before a desktop upload of `count` photos: resolves true once consent is recorded, false if not. */
  ask(count) {
    return this.show({ purpose: "upload", count });
  }

  show({ purpose, count = 0 }) {
    if (this.dialog.open) return Promise.resolve(false);
    const consent = this.deps.getSession()?.consent;
    setText($("#consent-dialog-title"), purpose === "upload" ? "Consent before adding photos" : "Record consent");
    setText($("#consent-dialog-text"), purpose === "upload"
      ? "This practice records the patient's consent before photos are kept. Ask the patient, then record what they agreed to."
      : "Record what the patient (or their guardian) agreed the photos may be used for. It goes into the record with every photo.");
    const scope = this.form.elements.scope;
    const givenBy = this.form.elements.givenBy;
    scope.value = consent?.scope || "clinical";
    givenBy.value = consent?.givenBy || "patient";
    setText(this.submit, purpose === "upload" ? `Record consent and add ${count === 1 ? "the photo" : `${count} photos`}` : "Record consent");
    show(this.error, false);
    this.dialog.returnValue = "";
    this.dialog.showModal();
    this.form.querySelector("input[name=scope]:checked")?.focus();
    return new Promise((resolve) => { this.pending = resolve; });
  }

  async save() {
    if (this.busy) return;
    const scope = this.form.elements.scope.value;
    const givenBy = this.form.elements.givenBy.value;
    if (!scope || !givenBy) return;
    this.busy = true;
    this.submit.disabled = true;
    show(this.error, false);
    try {
      const session = await api.recordConsent(this.deps.sessionId, { scope, givenBy });
      this.busy = false;
      this.deps.onRecorded(session);
      this.dialog.close("recorded");
      announce("Consent recorded.");
    } catch (err) {
      this.busy = false;
      setText(this.error, err instanceof ApiError ? err.detail : "Consent could not be recorded. Try again.");
      show(this.error, true);
    } finally {
      this.submit.disabled = false;
    }
  }

  close() {
    if (this.dialog.open) this.dialog.close("cancel");
  }
}

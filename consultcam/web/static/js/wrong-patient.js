// "Not this patient?": always in the banner (easy to find), but it only opens a confirmation that names the
// patient and says what will be lost, with "It is the right patient" focused, so a stray tap changes nothing.
// Confirming signs this phone out of the session (DELETE …/phone?reason=wrong-patient: the desktop is told
// through `phone.revoked`) and the page wipes every photo it holds.

import { ApiError, api } from "./api.js";
import { $, setText, show } from "./dom.js";
import { plural } from "./format.js";

export class WrongPatientDialog {
  /**
   * @param {{session(): object, unsent(): number, onOpen(): void, onClose(): void,
   *   onConfirmed(outcome: {notified: boolean}): void, beforeSignOut(): void}} hooks
   *   beforeSignOut: stop every upload at once (these photos must not reach the wrong record);
   *   onConfirmed: wipe and show the final screen; notified says whether the server took the sign-out.
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.dialog = $("#wrong-dialog");
    this.confirmBtn = $("#wrong-confirm");
    this.confirmBtn.addEventListener("click", () => this.confirm());
    this.dialog.addEventListener("close", () => {
      if (this.dialog.returnValue !== "confirmed") this.hooks.onClose();
    });
  }

  get open() {
    return this.dialog.open;
  }

  show() {
    const patient = this.hooks.session()?.patient || {};
    const name = patient.name || "the patient";
    const unsent = this.hooks.unsent();
    setText($("#wrong-title"), `Not ${patient.name || "this patient"}?`);
    setText($("#wrong-text"),
      `This phone will be signed out of ${name}'s session${patient.nhi ? ` (NHI ${patient.nhi})` : ""} and cannot send photos to it any more.`);
    setText($("#wrong-loss"), unsent
      ? `The ${plural(unsent, "photo")} on this phone not yet sent will be deleted. Photos already sent stay on the desktop for the clinician to check.`
      : "Photos already sent stay on the desktop for the clinician to check.");
    this.confirmBtn.disabled = false;
    setText(this.confirmBtn, "Sign this phone out");
    this.dialog.returnValue = "";
    this.hooks.onOpen();
    this.dialog.showModal();
    $("#wrong-cancel").focus();
  }

  async confirm() {
    this.confirmBtn.disabled = true;
    setText(this.confirmBtn, "Signing out…");
    this.hooks.beforeSignOut();
    let notified = true;
    try {
      await api.revokePhone(this.hooks.session().id, "wrong-patient");
    } catch (err) {
      // Already signed out, or the session is gone: the same outcome. Otherwise the desktop was not told.
      notified = err instanceof ApiError && [401, 403, 404, 409].includes(err.status);
    }
    this.dialog.close("confirmed");
    this.hooks.onConfirmed({ notified });
  }

  close() {
    if (this.dialog.open) this.dialog.close("ended");
  }
}

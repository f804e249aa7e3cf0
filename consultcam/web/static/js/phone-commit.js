// "Commit now" on the phone, offered only when the session allows it (CONSULTCAM_PHONE_CAN_COMMIT; off by
// default so the clinician reviews on the desktop). It runs the same commit as the desktop, with the same
// checks: the photos' required details are checked first here, then again by the server (422
// MetadataMissing with the list), and the desktop follows along through the server's events.

import { ApiError, api } from "./api.js";
import { $, h, setText, show } from "./dom.js";
import { plural, sentenceCase } from "./format.js";
import { describeConsent } from "./consent.js";
import { listFields, metadataGaps } from "./metadata-chips.js";

export class PhoneCommit {
  /**
   * @param {{session(): object, required(): string[], onCommitted(): void, onSessionGone(err): void}} hooks
   *   onCommitted: the records were written (the final screen follows); onSessionGone: the phone was signed
   *   out or the session ended meanwhile.
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.dialog = $("#commit-dialog");
    this.els = {
      title: $("#commit-title"),
      facts: $("#commit-facts"),
      text: $("#commit-text"),
      progress: $("#commit-progress"),
      bar: $("#commit-bar"),
      progressText: $("#commit-progress-text"),
      problem: $("#commit-problem"),
      problemTitle: $("#commit-problem-title"),
      missing: $("#commit-missing"),
      problemNext: $("#commit-problem-next"),
      confirm: $("#commit-confirm"),
      cancel: $("#commit-cancel"),
    };
    this.running = false;
    this.images = [];
    this.els.confirm.addEventListener("click", () => this.run());
    // Escape or "Not now" must not hide a commit that is running.
    this.dialog.addEventListener("cancel", (event) => { if (this.running) event.preventDefault(); });
    this.els.cancel.addEventListener("click", (event) => { if (this.running) event.preventDefault(); });
  }

  /** Open the confirmation: loads the session's photos first, so the count and the gaps are current. */
  async open() {
    if (this.running) return;
    this.reset();
    setText(this.els.title, "Commit to the record?");
    this.els.confirm.disabled = true;
    if (!this.dialog.open) this.dialog.showModal();
    this.els.title.focus();
    let session;
    try {
      session = await api.getSession(this.hooks.session().id);
    } catch (err) {
      if (err instanceof ApiError && [401, 403, 404].includes(err.status)) return this.gone(err);
      return this.problem("The photos could not be checked.", [],
        err instanceof ApiError && err.status ? err.detail : "The phone is not connected. Check the Wi-Fi and try again.");
    }
    this.images = (session.images || []).filter((image) => image.status === "ready" || !image.status);
    const patient = session.patient || {};
    const count = this.images.length;
    setText(this.els.title, `Commit ${plural(count, "photo")} to ${patient.name || "the patient"}'s record?`);
    this.els.facts.replaceChildren(
      fact("Patient", patient.name || "—"),
      fact("NHI", patient.nhi || "not recorded"),
      fact("Photos", String(count)),
      ...(session.consent ? [fact("Consent", sentenceCase(describeConsent(session.consent).replace(/^Consent: /, "")))] : []),
    );
    setText(this.els.text, "They are saved to the record and then removed from consultcam. The desktop shows the result.");
    setText(this.els.confirm, `Commit ${plural(count, "photo")}`);
    const gaps = this.gaps(metadataGaps(this.images, this.hooks.required()).gaps
      .map(({ item, fields }) => ({ imageId: item.id, fields })));
    if (!count) {
      this.problem("There are no photos to commit yet.", [], "Take and upload a photo first.");
    } else if (gaps.length) {
      this.problem(`${plural(gaps.length, "photo")} ${gaps.length === 1 ? "needs" : "need"} more details first`, gaps,
        "Add them on the desktop (the clinician can edit details there), then commit from the desktop.");
    } else {
      this.els.confirm.disabled = false;
      this.els.confirm.focus();
    }
  }

  reset() {
    show(this.els.progress, false);
    show(this.els.problem, false);
    show(this.els.text, true);
    show(this.els.confirm, true);
    setText(this.els.cancel, "Not now");
    this.els.facts.replaceChildren();
    setText(this.els.text, "");
  }

  /** A photo named as the desktop numbers it: "Photo 2 (Lesion A)". */
  photoName(imageId) {
    const index = this.images.findIndex((image) => image.id === imageId);
    if (index < 0) return "A photo";
    const label = this.images[index].metadata?.label;
    return `Photo ${index + 1}${label ? ` (${label})` : ""}`;
  }

  /** [{imageId, fields}] → ["Photo 2 (Lesion A): body site missing"]. */
  gaps(items) {
    return items.filter((gap) => gap.fields?.length)
      .map((gap) => `${this.photoName(gap.imageId)}: ${listFields(gap.fields)} missing`);
  }

  problem(title, rows, next) {
    setText(this.els.problemTitle, title);
    this.els.missing.replaceChildren(...rows.map((row) => h("li", {}, row)));
    show(this.els.missing, rows.length > 0);
    setText(this.els.problemNext, next);
    show(this.els.problem, true);
    show(this.els.text, false);
    show(this.els.progress, false);
    show(this.els.confirm, false);
    setText(this.els.cancel, "OK");
    this.els.cancel.focus();
  }

  async run() {
    if (this.running) return;
    this.running = true;
    show(this.els.confirm, false);
    show(this.els.text, false);
    show(this.els.progress, true);
    this.els.bar.removeAttribute("value"); // indeterminate until commit.progress says more
    setText(this.els.progressText, `Committing ${plural(this.images.length, "photo")}…`);
    this.els.cancel.disabled = true;
    try {
      // Exactly the photos the dialog counted: one added since is not committed unseen.
      const imageIds = this.images.map((image) => image.id);
      const result = await api.commit(this.hooks.session().id, { imageIds });
      this.running = false;
      if (result?.status === "committed") {
        this.dialog.close("done");
        this.hooks.onCommitted(result);
        return;
      }
      const failed = (result?.results || []).filter((r) => r.status === "failed");
      this.problem("Nothing was committed", failed.map((r) => `${this.photoName(r.imageId)}: ${r.error || "failed"}`),
        "The photos are still on the desktop. Ask the clinician to try again from there.");
    } catch (err) {
      this.running = false;
      if (err instanceof ApiError && err.name === "MetadataMissing") {
        const rows = this.gaps(err.body?.missing || []);
        this.problem(`Not committed: ${plural(rows.length || 1, "photo")} ${rows.length === 1 ? "needs" : "need"} more details`, rows,
          "Add them on the desktop (the clinician can edit details there), then commit from the desktop.");
      } else if (err instanceof ApiError && [401, 404].includes(err.status)) {
        this.gone(err);
      } else if (err instanceof ApiError && err.name === "AlreadyCommitted") {
        this.dialog.close("done");
        this.hooks.onCommitted(null);
      } else if (err instanceof ApiError && err.name === "PhoneCannotCommit") {
        this.problem("This phone cannot commit", [], "The clinician commits these photos on the desktop.");
      } else {
        this.problem("Nothing was committed", [],
          err instanceof ApiError && err.status ? err.detail : "The phone lost the connection. Check the Wi-Fi; the clinician can also commit on the desktop.");
      }
    } finally {
      this.els.cancel.disabled = false;
    }
  }

  /** A commit.progress event: {done, total}. */
  progress({ done, total }) {
    if (!this.running || !total) return;
    this.els.bar.value = done / total;
    setText(this.els.progressText, `Committing… ${done} of ${total}`);
  }

  gone(err) {
    this.running = false;
    if (this.dialog.open) this.dialog.close("gone");
    this.hooks.onSessionGone(err);
  }

  close() {
    this.running = false;
    if (this.dialog.open) this.dialog.close("closed");
  }
}


function fact(term, value) {
  return h("li", {}, h("span", { class: "fact-term" }, term), h("span", { class: "fact-value" }, value));
}

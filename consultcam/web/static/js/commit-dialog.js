// Commit on the desktop: a confirmation <dialog> → progress (from commit.progress events) → a result panel
// that says, per photo and in plain words, whether it reached the record.

import { ApiError, api } from "./api.js";
import { $, h, icon, setText, show } from "./dom.js";
import { formatBirthDateWithAge, plural } from "./format.js";

const OK_STATUSES = new Set(["committed", "created", "saved", "ok", "success", "succeeded", "done"]);

export class CommitDialog {
  /**
   * @param {{sessionId: string, getImages(): object[], getSession(): object,
   *   onCommitted(results: object[]): void, onConflict(err): void}} deps
   */
  constructor(deps) {
    this.deps = deps;
    this.dialog = $("#commit-dialog");
    this.form = $("#commit-form");
    this.confirmBtn = $("#commit-confirm-btn");
    this.cancelBtn = $("#commit-cancel");
    this.error = $("#commit-error");
    this.progress = $("#commit-progress");
    this.progressText = $("#commit-progress-text");
    this.running = false;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run();
    });
    this.cancelBtn.addEventListener("click", () => { if (!this.running) this.dialog.close("cancel"); });
    // Escape must not hide a commit that is still running.
    this.dialog.addEventListener("cancel", (event) => { if (this.running) event.preventDefault(); });
  }

  open() {
    const images = this.deps.getImages();
    if (!images.length || this.running) return;
    const session = this.deps.getSession();
    const patient = session.patient || {};
    setText($("#commit-dialog-title"), `Commit ${plural(images.length, "photo")} to the record?`);
    setText($("#commit-dialog-text"),
      `${plural(images.length, "photo")} will be saved to this patient's record for this consultation:`);
    const unlabelled = images.filter((image) => !image.metadata?.label).length;
    $("#commit-dialog-facts").replaceChildren(
      fact("Patient", patient.name || "Unnamed"),
      fact("NHI", patient.nhi || "not recorded", "mono"),
      fact("Born", patient.birthDate ? formatBirthDateWithAge(patient.birthDate) : "not recorded"),
      fact("Encounter", session.encounterId || "", "mono"),
      unlabelled ? fact("Labels", unlabelled === images.length ? "None labelled" : `${unlabelled} of ${images.length} without a label`) : null,
    );
    this.showStep("confirm");
    this.confirmBtn.textContent = `Commit ${plural(images.length, "photo")}`;
    show(this.error, false);
    this.dialog.showModal();
  }

  showStep(step) {
    show($("#commit-confirm-step"), step === "confirm");
    show($("#commit-progress-step"), step === "progress");
    this.confirmBtn.disabled = step === "progress";
    this.cancelBtn.disabled = step === "progress";
  }

  /** commit.started / commit.progress from the event stream. */
  onProgress(done, total) {
    if (!this.running) return;
    this.progress.max = Math.max(1, total);
    this.progress.value = done;
    setText(this.progressText, `Saving to the record… ${done} of ${total}`);
  }

  async run() {
    if (this.running) return;
    const images = this.deps.getImages();
    this.running = true;
    show(this.error, false);
    this.showStep("progress");
    this.progress.removeAttribute("value");
    setText(this.progressText, `Saving ${plural(images.length, "photo")} to the record…`);
    try {
      const result = await api.commit(this.deps.sessionId, { imageIds: images.map((image) => image.id) });
      this.running = false;
      this.dialog.close("done");
      this.deps.onCommitted(result.results || [], result);
    } catch (err) {
      this.running = false;
      this.showStep("confirm");
      const detail = err instanceof ApiError ? err.detail : "The commit failed.";
      setText(this.error, `Nothing was saved. ${detail}`);
      show(this.error, true);
      this.confirmBtn.textContent = "Try again";
      if (err instanceof ApiError && err.status === 409) this.deps.onConflict?.(err);
    }
  }

  close() {
    this.running = false;
    if (this.dialog.open) this.dialog.close();
  }
}

function describeResult(result, good) {
  if (good) return "Saved to the record";
  if (String(result.status).toLowerCase() === "skipped") return "Not included in this commit; deleted";
  return `Not saved: ${result.error || "the record system refused it"}`;
}

function fact(term, value, className = "") {
  if (!value) return null;
  return h("li", {}, h("span", { class: "fact-term" }, term), h("span", { class: `fact-value ${className}` }, value));
}

/**
 * Show commit results `[{imageId, status, resourceId?, error?}]` in the panel, one line per photo, using
 * the gallery position and label to name each photo.
 */
export function renderCommitResult(panel, results, describe, patientName, order = () => 0) {
  results = [...results].sort((a, b) => order(a.imageId) - order(b.imageId));
  const ok = results.filter((r) => OK_STATUSES.has(String(r.status).toLowerCase()));
  const failed = results.length - ok.length;
  const allOk = failed === 0;
  panel.dataset.outcome = allOk ? "ok" : ok.length ? "partial" : "failed";
  const title = allOk
    ? `${plural(ok.length, "photo")} saved to ${patientName ? `${patientName}'s` : "the patient's"} record`
    : `${ok.length} of ${plural(results.length, "photo")} saved; ${failed} not saved`;
  panel.replaceChildren(
    h("div", { class: "result-head" },
      icon(allOk ? "check-circle" : "alert", "icon icon-lg"),
      h("div", {},
        h("h3", { class: "result-title" }, title),
        h("p", { class: "muted" }, allOk
          ? "The temporary copies have been deleted from consultcam."
          : "Photos that were not saved are listed below with the reason."))),
    h("ol", { class: "result-list" }, results.map((result) => {
      const good = OK_STATUSES.has(String(result.status).toLowerCase());
      const who = describe(result.imageId);
      return h("li", { class: `result-item ${good ? "is-ok" : "is-failed"}`, dataset: { imageId: result.imageId } },
        icon(good ? "check" : "x-circle"),
        h("span", { class: "result-name" }, who),
        h("span", { class: "result-text" }, describeResult(result, good),
          good && result.resourceId ? h("span", { class: "result-ref", title: "Record reference" }, result.resourceId) : null));
    })),
  );
  show(panel, true);
  panel.focus({ preventScroll: false });
}

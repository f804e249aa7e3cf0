// Commit on the desktop: a <dialog> that first checks every photo has the session's required details
// (`requiredMetadata`; the server checks again and answers 422 MetadataMissing with the same list), lists the
// gaps with a button to go to each photo, then confirms → progress (commit.progress events) → a result panel
// that says, per photo and in plain words, whether it reached the record. A commit started on the phone
// (`phoneCanCommit`) shows its progress here too.

import { ApiError, api } from "./api.js";
import { CONSENT_GIVERS, CONSENT_SCOPES } from "./consent-dialog.js";
import { $, h, icon, setText, show } from "./dom.js";
import { formatBirthDateWithAge, plural } from "./format.js";
import { listFields, metadataGaps } from "./metadata-chips.js";

/** "Left forearm, Hand, Back": where the photos were taken (the server's `words.place`), each once. */
function describeSites(images) {
  const places = images.map((image) => (image.words?.bodySite ? image.words.place : "")).filter(Boolean);
  return [...new Set(places)].join(", ");
}

const OK_STATUSES = new Set(["committed", "created", "saved", "ok", "success", "succeeded", "done"]);

export class CommitDialog {
  /**
   * @param {{sessionId: string, getImages(): object[], getSession(): object, required(): string[],
   *   position(id: string): number, onJump(imageId: string, fields: string[]): void,
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
    this.external = false; // a commit the phone started
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run();
    });
    this.cancelBtn.addEventListener("click", () => { if (!this.running) this.dialog.close("cancel"); });
    // Escape must not hide a commit that is still running from this page.
    this.dialog.addEventListener("cancel", (event) => { if (this.running) event.preventDefault(); });
  }

  open() {
    const images = this.deps.getImages();
    if (!images.length || this.running || this.external) return;
    const required = this.deps.required();
    const gaps = metadataGaps(images, required).gaps.map(({ item, fields }) => ({ imageId: item.id, fields }));
    show(this.error, false);
    if (gaps.length) this.showGaps(gaps);
    else this.showConfirm(images);
    if (!this.dialog.open) this.dialog.showModal();
    (gaps.length ? this.dialog.querySelector(".gap-go") : this.confirmBtn)?.focus();
  }

  showConfirm(images) {
    const session = this.deps.getSession();
    const patient = session.patient || {};
    const consent = session.consent;
    setText($("#commit-dialog-title"), `Commit ${plural(images.length, "photo")} to the record?`);
    setText($("#commit-dialog-text"),
      `${plural(images.length, "photo")} will be saved to this patient's record for this consultation:`);
    const unlabelled = images.filter((image) => !image.metadata?.label).length;
    $("#commit-dialog-facts").replaceChildren(...[
      fact("Patient", patient.name || "Unnamed"),
      fact("NHI", patient.nhi || "not recorded", "mono"),
      fact("Born", patient.birthDate ? formatBirthDateWithAge(patient.birthDate) : "not recorded"),
      session.encounterInRecord === false // a launch's made-up day key means nothing to the GP
        ? fact("Encounter", "Today's consultation")
        : fact("Encounter", session.encounterId || "", "mono"),
      fact("Consent", consent
        ? `${CONSENT_SCOPES[consent.scope]?.title || consent.scope} (${(CONSENT_GIVERS[consent.givenBy] || "").toLowerCase() || "given"})`
        : "not recorded"),
      fact("Body sites", describeSites(images)),
      unlabelled ? fact("Labels", unlabelled === images.length ? "None labelled" : `${unlabelled} of ${images.length} without a label`) : null,
    ].filter(Boolean)); // a fact with nothing to say is left out (replaceChildren would write "null")
    this.showStep("confirm");
    this.confirmBtn.textContent = `Commit ${plural(images.length, "photo")}`;
  }

  /** List the photos that lack required details `[{imageId, fields}]`, each with a way to go to it. */
  showGaps(gaps) {
    const images = new Map(this.deps.getImages().map((image) => [image.id, image]));
    gaps = [...gaps].sort((a, b) => this.deps.position(a.imageId) - this.deps.position(b.imageId));
    const fields = [...new Set(gaps.flatMap((gap) => gap.fields))];
    setText($("#commit-dialog-title"), "Some photos need details first");
    setText($("#commit-gaps-text"), `${gaps.length === 1 ? "1 photo needs" : `${gaps.length} photos need`} a ${listFields(fields)} before `
      + "anything can be saved to the record. Nothing has been saved.");
    $("#commit-gaps").replaceChildren(...gaps.map((gap) => {
      const image = images.get(gap.imageId);
      const position = this.deps.position(gap.imageId);
      const name = position ? `Photo ${position}` : "A photo";
      const go = h("button", { type: "button", class: "btn btn-secondary btn-sm gap-go" }, `Go to ${name.toLowerCase()}`);
      go.addEventListener("click", () => {
        this.dialog.close("jump");
        this.deps.onJump(gap.imageId, gap.fields);
      });
      return h("li", { class: "gap-item", dataset: { imageId: gap.imageId } },
        h("span", { class: "gap-thumb" }, image?.urls?.thumbnail ? h("img", { src: image.urls.thumbnail, alt: "" }) : null),
        h("span", { class: "gap-text" },
          h("strong", {}, `${name}${image?.metadata?.label ? ` · ${image.metadata.label}` : ""}`),
          h("span", {}, `Needs ${listFields(gap.fields)}`)),
        go);
    }));
    this.showStep("gaps");
  }

  showStep(step) {
    show($("#commit-confirm-step"), step === "confirm");
    show($("#commit-gaps-step"), step === "gaps");
    show($("#commit-progress-step"), step === "progress");
    show(this.confirmBtn, step !== "gaps" && !this.external);
    this.confirmBtn.disabled = step === "progress";
    this.cancelBtn.disabled = step === "progress" && !this.external;
    setText(this.cancelBtn, step === "gaps" ? "Close" : this.external ? "Hide" : "Cancel");
  }

  /** commit.started from the event stream: a commit this page did not start (the phone's) is shown too. */
  started(total) {
    if (this.running) return;
    this.external = true;
    show(this.error, false);
    setText($("#commit-dialog-title"), "Saving to the record from the phone");
    this.showStep("progress");
    this.progress.removeAttribute("value");
    setText(this.progressText, `The phone started saving ${plural(total, "photo")} to the record…`);
    if (!this.dialog.open) this.dialog.showModal();
  }

  /** commit.progress from the event stream. */
  onProgress(done, total) {
    if (!this.running && !this.external) return;
    this.progress.max = Math.max(1, total);
    this.progress.value = done;
    setText(this.progressText, `Saving to the record… ${done} of ${total}`);
  }

  /** commit.failed from the event stream, for a commit this page did not start (`interrupted`: its process
   * stopped, so what reached the record is not known, and the detail says so). */
  failed(detail, { interrupted = false } = {}) {
    if (!this.external) return;
    this.external = false;
    this.showStep("confirm");
    show($("#commit-confirm-step"), false);
    show(this.confirmBtn, false);
    setText($("#commit-dialog-title"), "The commit from the phone did not finish");
    setText(this.error, interrupted ? detail : `Nothing was saved. ${detail || "The record system did not accept the photos."}`);
    show(this.error, true);
    setText(this.cancelBtn, "Close");
    if (!this.dialog.open) this.dialog.showModal();
  }

  async run() {
    if (this.running || this.external) return;
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
      if (err instanceof ApiError && err.name === "MetadataMissing" && Array.isArray(err.body?.missing)) {
        this.showGaps(err.body.missing.map((gap) => ({ imageId: gap.imageId, fields: gap.fields || [] })));
        this.dialog.querySelector(".gap-go")?.focus();
        return;
      }
      this.showStep("confirm");
      setText(this.error, failureWords(err));
      show(this.error, true);
      this.confirmBtn.textContent = "Try again";
      if (err instanceof ApiError && err.name === "LaunchExpired") {
        // The EHR's sign-in (SMART launch) ended: only a new launch from the EHR helps, not "Try again".
        setText($("#commit-dialog-title"), "Launch consultcam again from the EHR");
        show($("#commit-confirm-step"), false);
        show(this.confirmBtn, false);
        setText(this.cancelBtn, "Close");
      }
      if (err instanceof ApiError && err.status === 409) this.deps.onConflict?.(err);
    }
  }

  close() {
    this.running = false;
    this.external = false;
    if (this.dialog.open) this.dialog.close();
  }
}

/**
 * What the GP is told when this page's commit did not finish. The server's words when it answered (a
 * connector's failure says itself what was saved; a 409 says a commit is running); when the connection
 * dropped, consultcam may have stopped mid-commit: the outcome is not known yet, never "nothing was saved".
 */
function failureWords(err) {
  if (!(err instanceof ApiError)) return "Nothing was saved. The commit failed.";
  if (err.status === 0) {
    return "The connection to consultcam was lost while saving, so it is not known yet whether the photos "
      + "reached the record. Reload the page in a moment to see; committing again never saves a photo twice.";
  }
  if (err.name === "CommitFailed" || err.status === 409) return err.detail;
  return `Nothing was saved. ${err.detail}`;
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
export function renderCommitResult(panel, results, describe, patientName, order = () => 0, { byPhone = false } = {}) {
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
        h("p", { class: "muted" }, [
          byPhone ? "Committed from the phone." : "",
          allOk ? "The temporary copies have been deleted from consultcam." : "Photos that were not saved are listed below with the reason.",
        ].filter(Boolean).join(" ")))),
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

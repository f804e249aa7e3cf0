// The AI description of one photo (issue 6, docs/ai.md) as the details panel and the viewer show it:
// labelled as AI-generated with the model that wrote it, "Describing…" while the job runs, the reason in
// plain words when it failed, and nothing at all when the practice has no AI endpoint (`disabled`). It is a
// draft: it reaches the record only when the clinician presses "Add to notes" and the notes are saved, where
// it can be edited like anything typed. Nothing here writes to the record by itself.

import { h, icon } from "./dom.js";

export const AI_LABEL = "AI-generated description — check before use";

/** How far an analysis has got: a later state is never replaced by an earlier one. */
const STAGE = { disabled: 0, pending: 1, running: 2, done: 3, failed: 3 };

/**
 * The analysis to keep when news of a photo arrives: `incoming`, unless it is an earlier state than the one
 * `held` (a snapshot or an `image.added` that left before `image.analysed` arrived must not bring back
 * "Describing…" over a description already shown).
 * @param {object|undefined} held the analysis shown now
 * @param {object|undefined} incoming the analysis in the news
 */
export function laterAnalysis(held, incoming) {
  if (!incoming) return held;
  if (!held) return incoming;
  return (STAGE[incoming.status] ?? 0) < (STAGE[held.status] ?? 0) ? held : incoming;
}

/** `notes` with `description` added as a paragraph of its own at the end. */
export function appendToNotes(notes, description) {
  const before = String(notes || "").trimEnd();
  const text = String(description || "").trim();
  return before ? `${before}\n\n${text}` : text;
}

/** Whether `notes` already hold the description (it was added, and not edited away since). */
export function notesHold(notes, description) {
  const text = String(description || "").trim();
  return Boolean(text) && String(notes || "").includes(text);
}

export class AiDescription {
  /**
   * @param {{idPrefix: string, buttonClass?: string, onAdd(image: object): Promise<void>,
   *   notes?(image: object): string}} options
   *   `idPrefix` keeps element ids unique on the page; `onAdd(image)` appends the image's description to
   *   its notes and saves them (it throws an ApiError-like `{detail}` when it could not); `notes(image)`:
   *   the notes as they stand (a field being edited), else the stored ones are used.
   */
  constructor({ idPrefix, buttonClass = "btn btn-secondary btn-sm", onAdd, notes = null }) {
    this.onAdd = onAdd;
    this.notes = notes;
    this.image = null;
    this.canAdd = true;
    this.busy = false;
    const titleId = `${idPrefix}-ai-title`;
    this.title = h("h3", { class: "ai-title", id: titleId }, icon("info"), AI_LABEL);
    this.meta = h("p", { class: "ai-meta" });
    this.body = h("p", { class: "ai-body", dataset: { testid: "ai-description-text" } });
    this.addButton = h("button", {
      type: "button", class: `${buttonClass} ai-add`, dataset: { testid: "ai-add-to-notes" },
      onclick: () => this.add(),
    });
    this.message = h("p", { class: "ai-message", role: "status" });
    this.actions = h("div", { class: "ai-actions" }, this.addButton, this.message);
    this.element = h("section", {
      class: "ai-box", hidden: true, "aria-labelledby": titleId, dataset: { testid: "ai-description" },
    }, this.title, this.meta, this.body, this.actions);
  }

  /**
   * Show `image`'s analysis (null, or an analysis that is `disabled`: nothing is shown).
   * @param {object|null} image an API image
   * @param {{canAdd?: boolean}} options `canAdd`: offer "Add to notes" (one photo, session still open);
   *   unchanged when not given
   */
  update(image, { canAdd } = {}) {
    if (image?.id !== this.image?.id) this.message.textContent = "";
    this.image = image;
    if (canAdd !== undefined) this.canAdd = canAdd;
    const analysis = image?.analysis || {};
    const status = analysis.status;
    const shown = ["pending", "running", "done", "failed"].includes(status);
    this.element.hidden = !shown;
    if (!shown) return;
    this.element.dataset.status = status;
    this.meta.textContent = analysis.model ? `Model: ${analysis.model}` : "";
    this.meta.hidden = !analysis.model;
    if (status === "done") {
      this.body.replaceChildren(analysis.description || "");
    } else if (status === "failed") {
      this.body.replaceChildren(
        h("strong", {}, "No description. "),
        analysis.reason || "The AI service did not describe this photo.",
      );
    } else {
      this.body.replaceChildren(h("span", { class: "ai-dot", "aria-hidden": "true" }), "Describing…");
    }
    const offer = status === "done" && this.canAdd && Boolean(analysis.description);
    this.actions.hidden = !offer && !this.message.textContent;
    this.addButton.hidden = !offer;
    const notes = this.notes ? this.notes(image) : image.metadata?.notes;
    const added = notesHold(notes, analysis.description);
    this.addButton.disabled = added || this.busy;
    this.addButton.replaceChildren(...(added
      ? [icon("check"), "Added to notes"]
      : [icon("plus"), this.busy ? "Adding…" : "Add to notes"]));
  }

  async add() {
    const image = this.image;
    if (!image || this.busy) return;
    this.busy = true;
    this.message.textContent = "";
    delete this.message.dataset.tone;
    this.update(image);
    try {
      await this.onAdd(image);
    } catch (err) {
      this.message.textContent = `Not added: ${err?.detail || err?.message || "try again"}`;
      this.message.dataset.tone = "error";
    } finally {
      this.busy = false;
      if (this.image?.id === image.id) this.update(this.image);
    }
  }
}

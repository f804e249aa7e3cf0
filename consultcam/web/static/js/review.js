// The phone's review grid: one card per photo waiting to upload, showing what it is (its details in words),
// what is still missing, the quick quality check, a progress bar while uploading, and Details, Retake, Delete,
// or Retry when it failed. Cards are keyed by photo id and updated in place, and every card has the same
// fixed-size frame, so nothing moves while photos are prepared or sent.

import { h, icon } from "./dom.js";
import { describeQualityWarning, formatBytes, formatTime, sentenceCase } from "./format.js";
import { listFields } from "./metadata-chips.js";

const STATUS_TEXT = {
  preparing: "Preparing…",
  ready: "Ready to upload",
  queued: "Waiting…",
  uploading: "Uploading",
  registering: "Saving…",
  done: "Sent",
  failed: "Not sent",
};

export class ReviewGrid {
  /**
   * @param {HTMLElement} list the <ul>
   * @param {{onDetails(photo), onDelete(photo), onRetake(photo), onRetry(photo), describe(photo): string,
   *   missing(photo): string[]}} actions describe: the photo's details in words ("" when none);
   *   missing: the required metadata fields it lacks
   */
  constructor(list, actions) {
    this.list = list;
    this.actions = actions;
    this.cards = new Map();
  }

  /** Make the grid show exactly `photos`, in order. */
  sync(photos) {
    const wanted = new Set(photos.map((p) => p.id));
    for (const [id, card] of this.cards) {
      if (!wanted.has(id)) {
        card.img.removeAttribute("src"); // let the browser drop the decoded image
        card.root.remove();
        this.cards.delete(id);
      }
    }
    photos.forEach((photo, index) => {
      let card = this.cards.get(photo.id);
      if (!card) {
        card = this.createCard(photo);
        this.cards.set(photo.id, card);
      }
      if (this.list.children[index] !== card.root) this.list.insertBefore(card.root, this.list.children[index] ?? null);
      this.update(photo, index + 1);
    });
  }

  createCard(photo) {
    const img = h("img", { class: "photo-img", alt: "", decoding: "async" });
    const number = h("span", { class: "photo-num", "aria-hidden": "true" });
    const statusIcon = h("span", { class: "photo-badge", "aria-hidden": "true" });
    const frame = h("button", { type: "button", class: "photo-frame", onclick: () => this.actions.onDetails(photo) },
      img, number, statusIcon);
    const summary = h("p", { class: "photo-summary" });
    const missing = h("p", { class: "photo-missing", hidden: true });
    const quality = h("p", { class: "photo-quality", hidden: true });
    const progress = h("progress", { class: "photo-progress", max: "1", value: "0" });
    const status = h("span", { class: "photo-status" });
    const detail = h("p", { class: "photo-error", role: "alert", hidden: true });
    const details = h("button", { type: "button", class: "btn btn-quiet btn-sm", onclick: () => this.actions.onDetails(photo) },
      icon("tag"), "Details");
    const retake = h("button", { type: "button", class: "btn btn-quiet btn-sm", onclick: () => this.actions.onRetake(photo) },
      icon("retake"), "Retake");
    const remove = h("button", { type: "button", class: "btn btn-quiet btn-sm btn-danger-text", onclick: () => this.actions.onDelete(photo) },
      icon("trash"), "Delete");
    const retry = h("button", { type: "button", class: "btn btn-primary btn-sm", hidden: true, onclick: () => this.actions.onRetry(photo) },
      icon("refresh"), "Retry");
    const root = h("li", { class: "photo-card", dataset: { photoId: photo.id } },
      frame,
      h("div", { class: "photo-body" },
        summary, missing, quality,
        h("div", { class: "photo-progress-row" }, status, progress),
        detail),
      h("div", { class: "photo-actions" }, details, retake, remove, retry));
    return {
      root, frame, img, number, statusIcon, summary, missing, quality, progress, status, detail,
      details, retake, remove, retry, url: null,
    };
  }

  /** Refresh one card's details, status, progress and buttons. */
  update(photo, position) {
    const card = this.cards.get(photo.id);
    if (!card) return;
    if (position) {
      card.position = position;
      card.number.textContent = String(position);
      card.frame.setAttribute("aria-label", `Photo ${position}: details`);
      card.details.setAttribute("aria-label", `Details for photo ${position}`);
      card.retake.setAttribute("aria-label", `Retake photo ${position}`);
      card.remove.setAttribute("aria-label", `Delete photo ${position}`);
      card.retry.setAttribute("aria-label", `Retry uploading photo ${position}`);
      card.progress.setAttribute("aria-label", `Photo ${position} upload progress`);
    }
    const n = card.position;
    if (photo.url && card.url !== photo.url) {
      card.img.src = photo.url;
      card.url = photo.url;
    }
    card.img.hidden = !photo.url;
    card.img.alt = `Photo ${n}, taken ${formatTime(photo.capturedAt)}`;

    const described = this.actions.describe(photo);
    card.summary.textContent = described || "No details yet";
    card.summary.classList.toggle("is-empty", !described);
    const missing = this.actions.missing(photo);
    card.missing.hidden = !missing.length || photo.status === "done";
    card.missing.replaceChildren(icon("info"), `${sentenceCase(listFields(missing))} needed`);
    const warnings = (photo.check?.warnings || []).map(describeQualityWarning);
    card.quality.hidden = !warnings.length;
    card.quality.replaceChildren(icon("alert"), warnings.join(" · "));

    const busy = ["queued", "uploading", "registering"].includes(photo.status);
    const locked = busy || photo.status === "done";
    card.root.dataset.status = photo.status;
    card.root.toggleAttribute("data-waiting", Boolean(photo.waiting));
    card.frame.disabled = locked;
    card.details.hidden = locked;
    card.retake.hidden = locked;
    card.remove.hidden = locked;
    card.retry.hidden = photo.status !== "failed" || !photo.blob;
    card.progress.hidden = !locked;
    card.progress.value = photo.status === "done" ? 1 : photo.progress || 0;
    let text = STATUS_TEXT[photo.status] || "";
    if (photo.status === "uploading") text = `Uploading ${Math.round((photo.progress || 0) * 100)}%`;
    if (photo.status === "ready" && photo.blob) text = `Ready · ${formatBytes(photo.blob.size)}`;
    if (photo.waiting) text = "Waiting for the network";
    else if (photo.retrying) text = `${text} (trying again)`;
    card.status.textContent = text;
    card.statusIcon.replaceChildren(photo.status === "done" ? icon("check") : photo.status === "failed" ? icon("alert") : "");
    card.detail.hidden = !photo.error;
    card.detail.textContent = photo.error || "";
  }
}

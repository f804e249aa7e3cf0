// The phone's review grid: one card per photo waiting to upload, with a label, retake, delete, a progress
// bar while uploading and Retry when it failed. Cards are keyed by photo id and updated in place so a label
// being typed is never replaced under the user's thumb.

import { h, icon } from "./dom.js";
import { formatBytes, formatTime } from "./format.js";

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
   * @param {{onLabel(photo, label), onDelete(photo), onRetake(photo), onRetry(photo)}} actions
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
    const labelId = `label-${photo.id}`;
    const img = h("img", { class: "photo-img", alt: "", decoding: "async" });
    const number = h("span", { class: "photo-num" });
    const statusIcon = h("span", { class: "photo-badge", "aria-hidden": "true" });
    const labelText = h("label", { class: "visually-hidden", for: labelId });
    const input = h("input", {
      id: labelId, class: "label-input", type: "text", maxlength: "120", placeholder: "Label (optional)",
      autocomplete: "off", enterkeyhint: "done",
    });
    input.addEventListener("input", () => this.actions.onLabel(photo, input.value));
    input.addEventListener("keydown", (event) => { if (event.key === "Enter") input.blur(); });
    const progress = h("progress", { class: "photo-progress", max: "1", value: "0" });
    const status = h("span", { class: "photo-status" });
    const detail = h("p", { class: "photo-error", role: "alert", hidden: true });
    const retake = h("button", { type: "button", class: "btn btn-quiet btn-sm", onclick: () => this.actions.onRetake(photo) },
      icon("retake"), "Retake");
    const remove = h("button", { type: "button", class: "btn btn-quiet btn-sm btn-danger-text", onclick: () => this.actions.onDelete(photo) },
      icon("trash"), "Delete");
    const retry = h("button", { type: "button", class: "btn btn-primary btn-sm", hidden: true, onclick: () => this.actions.onRetry(photo) },
      icon("refresh"), "Retry");
    const root = h("li", { class: "photo-card", dataset: { photoId: photo.id } },
      h("div", { class: "photo-frame" }, img, number, statusIcon),
      h("div", { class: "photo-body" },
        labelText, input,
        h("div", { class: "photo-progress-row" }, status, progress),
        detail),
      h("div", { class: "photo-actions" }, retake, remove, retry));
    return { root, img, number, statusIcon, labelText, input, progress, status, detail, retake, remove, retry, url: null };
  }

  /** Refresh one card's status, progress and buttons. */
  update(photo, position) {
    const card = this.cards.get(photo.id);
    if (!card) return;
    if (position) {
      card.position = position;
      card.number.textContent = String(position);
      card.labelText.textContent = `Label for photo ${position}`;
      card.retake.setAttribute("aria-label", `Retake photo ${position}`);
      card.remove.setAttribute("aria-label", `Delete photo ${position}`);
      card.retry.setAttribute("aria-label", `Retry uploading photo ${position}`);
    }
    const n = card.position;
    if (photo.url && card.url !== photo.url) {
      card.img.src = photo.url;
      card.url = photo.url;
    }
    card.img.hidden = !photo.url;
    card.img.alt = `Photo ${n}, taken ${formatTime(photo.capturedAt)}`;
    if (document.activeElement !== card.input && card.input.value !== (photo.label || "")) card.input.value = photo.label || "";

    const busy = ["queued", "uploading", "registering"].includes(photo.status);
    card.root.dataset.status = photo.status;
    card.input.disabled = busy || photo.status === "done";
    card.retake.hidden = busy || photo.status === "done";
    card.remove.hidden = busy || photo.status === "done";
    card.retry.hidden = photo.status !== "failed" || !photo.blob;
    card.progress.hidden = !(busy || photo.status === "done");
    card.progress.value = photo.status === "done" ? 1 : photo.progress || 0;
    card.progress.setAttribute("aria-label", `Photo ${n} upload progress`);
    let text = STATUS_TEXT[photo.status] || "";
    if (photo.status === "uploading") text = `Uploading ${Math.round((photo.progress || 0) * 100)}%`;
    if (photo.status === "ready" && photo.blob) text = `Ready · ${formatBytes(photo.blob.size)}`;
    if (photo.retrying) text = `${text} (trying again)`;
    card.status.textContent = text;
    card.statusIcon.replaceChildren(photo.status === "done" ? icon("check") : photo.status === "failed" ? icon("alert") : "");
    card.detail.hidden = !photo.error;
    card.detail.textContent = photo.error || "";
  }

  /** Focus the label of the first photo (after arriving on the review screen). */
  focusFirst() {
    this.list.querySelector(".label-input:not(:disabled)")?.focus({ preventScroll: true });
  }
}

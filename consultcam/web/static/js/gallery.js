// The desktop gallery: one <figure data-image-id> per clinical image, in registration order, in fixed-size
// boxes so nothing moves when a photo arrives or its thumbnail loads. Signed URLs are short-lived: a
// thumbnail that fails to load asks for the image again to get fresh ones.

import { h, icon } from "./dom.js";
import { describeQualityWarning, formatTime } from "./format.js";

const REFETCH_AFTER_MS = 4000;

export class Gallery {
  /**
   * @param {HTMLElement} root the gallery container
   * @param {{fetchImage(id): Promise<object>, onDelete(image, position), onLabel(image, label): Promise,
   *   downloadUrl(id): string, onChange(): void, onShown(id): void}} deps
   */
  constructor(root, deps) {
    this.root = root;
    this.deps = deps;
    this.items = new Map();
    this.readOnly = false;
  }

  get size() {
    return this.items.size;
  }

  /** The images in the order shown (the order they were taken). */
  images() {
    return [...this.root.querySelectorAll(".g-item")]
      .map((figure) => this.items.get(figure.dataset.imageId)?.image)
      .filter(Boolean);
  }

  has(id) {
    return this.items.has(id);
  }

  /** Add or update an image. Images from events carry no URLs: they are fetched once. */
  upsert(image) {
    let item = this.items.get(image.id);
    if (!item) {
      item = this.create(image);
      this.items.set(image.id, item);
      this.place(item);
      this.renumber();
      this.deps.onChange?.();
    }
    item.image = { ...item.image, ...image, urls: image.urls || item.image.urls };
    this.render(item);
    // A thumbnail already showing stays: a fresh signature on the same picture is not worth a reload.
    if (image.urls?.thumbnail && item.figure.dataset.state !== "ready") this.setSource(item, image.urls.thumbnail);
    else if (!item.src) this.refresh(item);
    return item;
  }

  remove(id) {
    const item = this.items.get(id);
    if (!item) return;
    item.figure.remove();
    this.items.delete(id);
    this.renumber();
    this.deps.onChange?.();
  }

  clear() {
    for (const id of [...this.items.keys()]) this.remove(id);
  }

  /** After commit or cancel: no more edits; committed photos are marked as saved. */
  setReadOnly(reason) {
    this.readOnly = true;
    this.root.dataset.readonly = reason;
    for (const item of this.items.values()) this.render(item);
  }

  // -- internals --------------------------------------------------------------------------------------

  create(image) {
    const img = h("img", { class: "g-img", alt: "", decoding: "async", draggable: "false" });
    img.addEventListener("load", () => {
      item.figure.dataset.state = "ready";
      item.figure.dataset.loaded = "true";
      this.deps.onShown?.(item.image.id);
    });
    img.addEventListener("error", () => {
      if (!item.src) return;
      item.figure.dataset.state = "error";
      if (Date.now() - item.fetchedAt > REFETCH_AFTER_MS && !this.readOnly) this.refresh(item);
    });
    const number = h("span", { class: "g-num" });
    const statusBadge = h("span", { class: "g-saved", hidden: true }, icon("check"), "Saved");
    const label = h("input", {
      class: "g-label", type: "text", maxlength: "120", placeholder: "Add a label", autocomplete: "off", spellcheck: "true",
    });
    const saved = h("span", { class: "g-label-state", "aria-live": "polite" });
    label.addEventListener("change", async () => {
      saved.textContent = "Saving…";
      try {
        await this.deps.onLabel(item.image, label.value.trim());
        saved.textContent = "Saved";
        setTimeout(() => { if (saved.textContent === "Saved") saved.textContent = ""; }, 2000);
      } catch (err) {
        saved.textContent = err?.detail || "Not saved";
      }
    });
    label.addEventListener("keydown", (event) => { if (event.key === "Enter") label.blur(); });
    const time = h("time", { class: "g-time" });
    const size = h("span", { class: "g-dims" });
    const badges = h("ul", { class: "g-badges" });
    const download = h("a", { class: "btn btn-quiet btn-sm", download: "" }, icon("download"), "Download");
    const remove = h("button", { type: "button", class: "btn btn-quiet btn-sm btn-danger-text" }, icon("trash"), "Delete");
    remove.addEventListener("click", () => this.deps.onDelete(item.image, item.position));
    const figure = h("figure", { class: "g-item", dataset: { imageId: image.id, state: "loading" } },
      h("div", { class: "g-thumb" }, img, number, statusBadge),
      h("figcaption", { class: "g-caption" },
        h("div", { class: "g-label-row" }, label, saved),
        h("div", { class: "g-meta" }, time, size),
        badges,
        h("div", { class: "g-actions" }, download, remove)));
    const item = {
      image, figure, img, number, statusBadge, label, saved, time, size, badges, download, remove,
      src: null, fetchedAt: 0, fetching: null, position: 0,
    };
    return item;
  }

  /** Photos stand in the order they were taken (as numbered on the phone), not the order they arrived. */
  place(item) {
    const after = [...this.items.values()]
      .filter((other) => other !== item && compare(other.image, item.image) > 0)
      .sort((a, b) => compare(a.image, b.image))[0];
    this.root.insertBefore(item.figure, after ? after.figure : null);
  }

  renumber() {
    let position = 0;
    for (const figure of this.root.querySelectorAll(".g-item")) {
      const item = this.items.get(figure.dataset.imageId);
      if (!item) continue;
      position += 1;
      item.position = position;
      this.render(item);
    }
  }

  render(item) {
    const { image, position } = item;
    const metadata = image.metadata || {};
    const labelText = metadata.label || "";
    const taken = image.capturedAt || image.createdAt;
    item.number.textContent = String(position);
    item.img.alt = `Photo ${position}${labelText ? `: ${labelText}` : ""}, taken ${formatTime(taken)}`;
    if (document.activeElement !== item.label) item.label.value = labelText;
    item.label.setAttribute("aria-label", `Label for photo ${position}`);
    item.label.disabled = this.readOnly;
    item.label.placeholder = this.readOnly ? "No label" : "Add a label";
    item.time.dateTime = taken || "";
    item.time.textContent = taken ? `Taken ${formatTime(taken, { seconds: true })}` : "";
    item.size.textContent = image.width && image.height ? `${image.width} × ${image.height}` : "";
    const warnings = [...new Set((image.quality?.warnings || []).map(describeQualityWarning).filter(Boolean))];
    item.badges.replaceChildren(...warnings.map((text) => h("li", { class: "badge badge-warn" }, icon("alert"), text)));
    item.badges.hidden = warnings.length === 0;
    item.download.href = this.deps.downloadUrl(image.id);
    item.download.setAttribute("aria-label", `Download photo ${position}`);
    item.remove.setAttribute("aria-label", `Delete photo ${position}`);
    item.download.hidden = this.readOnly;
    item.remove.hidden = this.readOnly;
    item.statusBadge.hidden = this.root.dataset.readonly !== "committed";
  }

  setSource(item, url) {
    if (item.src === url) return;
    item.src = url;
    item.img.src = url;
  }

  refresh(item) {
    if (item.fetching) return item.fetching;
    item.fetchedAt = Date.now();
    item.fetching = this.deps.fetchImage(item.image.id)
      .then((image) => {
        if (!this.items.has(image.id)) return;
        item.image = { ...item.image, ...image };
        this.render(item);
        if (image.urls?.thumbnail) this.setSource(item, image.urls.thumbnail);
      })
      .catch(() => { item.figure.dataset.state = "error"; })
      .finally(() => { item.fetching = null; });
    return item.fetching;
  }
}

function compare(a, b) {
  const time = (image) => Date.parse(image.capturedAt || image.createdAt) || 0;
  return time(a) - time(b) || (Date.parse(a.createdAt) || 0) - (Date.parse(b.createdAt) || 0) || (a.id < b.id ? -1 : 1);
}

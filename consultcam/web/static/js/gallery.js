// The desktop gallery: one <figure data-image-id> per clinical image, in the order taken, in fixed 4:3 boxes
// so nothing moves when a photo arrives, its thumbnail loads or its badges change. Each card has a checkbox
// (shift-click selects a range), the thumbnail opens the viewer, and badges say what is missing before commit
// (the session's `requiredMetadata`), what the quality check found and that an AI description is ready (its
// text is in the details panel and the viewer, never on the card). For the keyboard the gallery is one
// stop: Tab reaches the current photo's controls, the arrow keys move between photos (a roving tabindex), so
// Tab then goes on to the details panel. Signed URLs are short-lived: a thumbnail that fails to load asks for
// the image again to get fresh ones.

import { laterAnalysis } from "./ai-description.js";
import { h, icon } from "./dom.js";
import { describeQualityWarning, formatTime } from "./format.js";
import { listFields, missingFields } from "./metadata-chips.js";

const REFETCH_AFTER_MS = 4000;

/** The chip line of a photo: side, body site and view in the server's words (`image.words`; label has its own field). */
export function describeMetadata(image) {
  const words = image?.words || {};
  return [words.laterality, words.bodySite, words.view].filter(Boolean);
}

export class Gallery {
  /**
   * @param {HTMLElement} root the gallery container
   * @param {{fetchImage(id): Promise<object>, onDelete(image, position), onLabel(image, label): Promise,
   *   downloadUrl(id): string, onChange(): void, onShown(id): void, onOpen(image, index): void,
   *   onSelection(images: object[]): void, onCurrent(image): void}} deps
   */
  constructor(root, deps) {
    this.root = root;
    this.root.addEventListener("keydown", (event) => this.onKey(event));
    this.deps = deps;
    this.items = new Map();
    this.readOnly = false;
    this.required = [];
    this.terminology = null;
    this.selected = new Set();
    this.anchor = null; // the last checkbox clicked: the start of a shift-click range
    this.currentId = null;
  }

  get size() {
    return this.items.size;
  }

  /** The images in the order shown (the order they were taken). */
  images() {
    return this.orderedItems().map((item) => item.image);
  }

  get(id) {
    return this.items.get(id)?.image ?? null;
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
      this.updateTabStops();
      this.deps.onChange?.();
    }
    item.image = merged(item.image, image);
    this.render(item);
    // A thumbnail already showing stays: a fresh signature on the same picture is not worth a reload.
    if (image.urls?.thumbnail && item.figure.dataset.state !== "ready") this.setSource(item, image.urls.thumbnail);
    else if (!item.src) this.refresh(item);
    if (this.selected.has(image.id)) this.deps.onSelection?.(this.selection());
    if (this.currentId === image.id) this.deps.onCurrent?.(item.image);
    return item;
  }

  remove(id) {
    const item = this.items.get(id);
    if (!item) return;
    const hadFocus = item.figure.contains(document.activeElement);
    item.figure.remove();
    this.items.delete(id);
    if (this.anchor === id) this.anchor = null;
    if (this.selected.delete(id)) this.deps.onSelection?.(this.selection());
    this.renumber();
    this.updateTabStops();
    if (this.currentId === id) {
      this.currentId = null;
      const next = this.orderedItems()[0];
      this.setCurrent(next?.image.id ?? null);
      if (hadFocus && next) next.open.focus();
    }
    this.deps.onChange?.();
  }

  clear() {
    for (const id of [...this.items.keys()]) this.remove(id);
  }

  /** After commit or cancel: no more edits; committed photos are marked as saved. */
  setReadOnly(reason) {
    this.readOnly = true;
    this.root.dataset.readonly = reason;
    this.selected.clear();
    for (const item of this.items.values()) this.render(item);
    this.deps.onSelection?.([]);
  }

  /** The fields every photo needs before commit (`session.requiredMetadata`). */
  setRequired(fields) {
    const next = [...(fields || [])];
    if (next.join() === this.required.join()) return;
    this.required = next;
    for (const item of this.items.values()) this.render(item);
  }

  setTerminology(terminology) {
    this.terminology = terminology;
    for (const item of this.items.values()) this.render(item);
  }

  // -- selection and the current photo -----------------------------------------------------------------

  /** The selected images, in gallery order. */
  selection() {
    return this.orderedItems().filter((item) => this.selected.has(item.image.id)).map((item) => item.image);
  }

  /** Select exactly `ids` (others are cleared). */
  select(ids) {
    this.selected = new Set([...ids].filter((id) => this.items.has(id)));
    for (const item of this.items.values()) this.renderSelected(item);
    this.deps.onSelection?.(this.selection());
  }

  selectAll(on = true) {
    this.select(on ? [...this.items.keys()] : []);
  }

  /** The photo the details panel shows when nothing is selected. */
  get current() {
    return this.currentId ? this.get(this.currentId) : null;
  }

  setCurrent(id, { scroll = false, focus = false } = {}) {
    const item = id ? this.items.get(id) : null;
    if (this.currentId !== (item ? id : null)) {
      const before = this.items.get(this.currentId);
      this.currentId = item ? id : null;
      if (before) delete before.figure.dataset.current;
      if (item) item.figure.dataset.current = "true";
      this.updateTabStops();
      this.deps.onCurrent?.(item?.image ?? null);
    }
    if (item && scroll) item.figure.scrollIntoView({ block: "nearest", behavior: "smooth" });
    if (item && focus) item.open.focus({ preventScroll: !scroll });
  }

  /** The position (1-based) of a photo as numbered on the page. */
  position(id) {
    return this.items.get(id)?.position ?? 0;
  }

  // -- internals --------------------------------------------------------------------------------------

  /** Only the current photo's controls are in the Tab order (WAI-ARIA APG "roving tabindex"). */
  updateTabStops() {
    const current = this.items.get(this.currentId) || this.orderedItems()[0];
    for (const item of this.items.values()) {
      const index = item === current ? 0 : -1;
      for (const control of [item.open, item.check, item.label, item.download, item.remove]) control.tabIndex = index;
    }
  }

  /** Arrow keys, Home and End on a photo's thumbnail or checkbox move to another photo's same control. */
  onKey(event) {
    const item = this.items.get(event.target.closest?.(".g-item")?.dataset.imageId);
    if (!item || ![item.open, item.check].includes(event.target) || event.altKey || event.ctrlKey || event.metaKey) return;
    const order = this.orderedItems();
    const at = order.indexOf(item);
    const top = order[0]?.figure.offsetTop;
    const columns = Math.max(1, order.filter((other) => other.figure.offsetTop === top).length);
    const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns, ArrowDown: columns }[event.key];
    let next;
    if (step !== undefined) next = order[Math.min(order.length - 1, Math.max(0, at + step))];
    else if (event.key === "Home") next = order[0];
    else if (event.key === "End") next = order.at(-1);
    else return;
    event.preventDefault();
    if (!next || next === item) return;
    this.setCurrent(next.image.id, { scroll: true });
    (event.target === item.check ? next.check : next.open).focus();
  }

  orderedItems() {
    return [...this.root.querySelectorAll(".g-item")].map((figure) => this.items.get(figure.dataset.imageId)).filter(Boolean);
  }

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
    const open = h("button", { type: "button", class: "g-open", "aria-describedby": "gallery-keys" }, img);
    open.addEventListener("click", () => this.deps.onOpen?.(item.image, item.position - 1));
    const check = h("input", { type: "checkbox", class: "g-check" });
    check.addEventListener("click", (event) => this.onCheck(item, event));
    const number = h("span", { class: "g-num", "aria-hidden": "true" });
    const select = h("label", { class: "g-select" }, check, number);
    const statusBadge = h("span", { class: "g-saved", hidden: true }, icon("check"), "Saved");
    const source = h("span", { class: "g-source", hidden: true }, icon("upload"), "From this computer");
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
    const chips = h("p", { class: "g-chips" });
    const time = h("time", { class: "g-time" });
    const size = h("span", { class: "g-dims" });
    const badges = h("ul", { class: "g-badges" });
    const download = h("a", { class: "btn btn-quiet btn-sm", download: "" }, icon("download"), "Download");
    const remove = h("button", { type: "button", class: "btn btn-quiet btn-sm btn-danger-text" }, icon("trash"), "Delete");
    remove.addEventListener("click", () => this.deps.onDelete(item.image, item.position));
    const figure = h("figure", { class: "g-item", dataset: { imageId: image.id, state: "loading" } },
      h("div", { class: "g-thumb" }, open, select, statusBadge, source),
      h("figcaption", { class: "g-caption" },
        h("div", { class: "g-label-row" }, label, saved),
        chips,
        h("div", { class: "g-meta" }, time, size),
        badges,
        h("div", { class: "g-actions" }, download, remove)));
    // Whatever part of a card is used, the details panel follows it (when nothing is selected).
    figure.addEventListener("focusin", () => this.setCurrent(item.image.id));
    figure.addEventListener("pointerdown", () => this.setCurrent(item.image.id));
    const item = {
      image, figure, img, open, check, select, number, statusBadge, source, label, saved, chips, time, size, badges,
      download, remove, src: null, fetchedAt: 0, fetching: null, position: 0,
    };
    if (!this.currentId) queueMicrotask(() => { if (!this.currentId && this.items.has(image.id)) this.setCurrent(image.id); });
    return item;
  }

  onCheck(item, event) {
    const id = item.image.id;
    const on = item.check.checked;
    const order = this.orderedItems().map((other) => other.image.id);
    if (event.shiftKey && this.anchor && this.anchor !== id && order.includes(this.anchor)) {
      const [from, to] = [order.indexOf(this.anchor), order.indexOf(id)].sort((a, b) => a - b);
      for (const other of order.slice(from, to + 1)) {
        if (on) this.selected.add(other);
        else this.selected.delete(other);
      }
    } else if (on) {
      this.selected.add(id);
    } else {
      this.selected.delete(id);
    }
    this.anchor = id;
    for (const other of this.items.values()) this.renderSelected(other);
    this.deps.onSelection?.(this.selection());
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
    for (const item of this.orderedItems()) {
      position += 1;
      item.position = position;
      this.render(item);
    }
  }

  renderSelected(item) {
    const on = this.selected.has(item.image.id);
    item.check.checked = on;
    if (on) item.figure.dataset.selected = "true";
    else delete item.figure.dataset.selected;
  }

  render(item) {
    const { image, position } = item;
    const metadata = image.metadata || {};
    const labelText = metadata.label || "";
    const taken = image.capturedAt || image.createdAt;
    const words = describeMetadata(image);
    item.number.textContent = String(position);
    item.img.alt = `Photo ${position}${labelText ? `: ${labelText}` : ""}${words.length ? `, ${words.join(", ")}` : ""}, taken ${formatTime(taken)}`;
    item.open.setAttribute("aria-label", `Open photo ${position} in the viewer`);
    item.open.title = "Open in the viewer (zoom, rotate, crop, annotate)";
    item.check.setAttribute("aria-label", `Select photo ${position}`);
    item.select.hidden = this.readOnly;
    if (document.activeElement !== item.label) item.label.value = labelText;
    item.label.setAttribute("aria-label", `Label for photo ${position}`);
    item.label.disabled = this.readOnly;
    item.label.placeholder = this.readOnly ? "No label" : "Add a label";
    const missing = this.readOnly ? [] : missingFields(image, this.required);
    item.chips.replaceChildren(...(words.length
      ? words.map((word) => h("span", { class: "g-chip" }, word))
      : [h("span", { class: "g-chip-empty" }, "No body site yet")]));
    item.time.dateTime = taken || "";
    item.time.textContent = taken ? `Taken ${formatTime(taken, { seconds: true })}` : "";
    item.size.textContent = image.width && image.height ? `${image.width} × ${image.height}` : "";
    const warnings = [...new Set((image.quality?.warnings || []).map(describeQualityWarning).filter(Boolean))];
    item.badges.replaceChildren(
      ...(missing.length
        ? [h("li", { class: "badge badge-missing", dataset: { missing: missing.join(" ") } }, icon("tag"), `Needs ${listFields(missing)}`)]
        : []),
      ...warnings.map((text) => h("li", { class: "badge badge-warn", dataset: { quality: "true" } }, icon("alert"), text)),
      ...(image.analysis?.status === "done"
        ? [h("li", { class: "badge badge-ai", dataset: { ai: "done" }, title: "An AI-generated description is ready in Details" },
          icon("info"), "AI description")]
        : []),
    );
    item.figure.dataset.missing = missing.join(" ");
    item.download.href = this.deps.downloadUrl(image.id);
    item.download.setAttribute("aria-label", `Download photo ${position}`);
    item.remove.setAttribute("aria-label", `Delete photo ${position}`);
    item.download.hidden = this.readOnly;
    item.remove.hidden = this.readOnly;
    item.statusBadge.hidden = this.root.dataset.readonly !== "committed";
    item.source.hidden = image.source !== "desktop" || !item.statusBadge.hidden;
    this.renderSelected(item);
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
        item.image = merged(item.image, image);
        this.render(item);
        if (image.urls?.thumbnail) this.setSource(item, image.urls.thumbnail);
        // The details panel shows the thumbnail too, and the photo's news may have changed meanwhile.
        if (this.currentId === image.id) this.deps.onCurrent?.(item.image);
        else if (this.selected.has(image.id)) this.deps.onSelection?.(this.selection());
      })
      .catch(() => { item.figure.dataset.state = "error"; })
      .finally(() => { item.fetching = null; });
    return item.fetching;
  }
}

/**
 * An image with news of it applied: URLs kept when the news has none (events carry none), and the analysis
 * never taken back to an earlier state (an `image.added` that arrives after `image.analysed`).
 */
function merged(held, news) {
  return { ...held, ...news, urls: news.urls || held.urls, analysis: laterAnalysis(held.analysis, news.analysis) };
}

function compare(a, b) {
  const time = (image) => Date.parse(image.capturedAt || image.createdAt) || 0;
  return time(a) - time(b) || (Date.parse(a.createdAt) || 0) - (Date.parse(b.createdAt) || 0) || (a.id < b.id ? -1 : 1);
}

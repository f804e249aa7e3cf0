// The desktop image viewer: a modal lightbox over the gallery showing one photo at a time with its edits
// drawn as they will be committed, zoom and pan, previous/next, the photo's metadata, quality warnings and
// AI description (labelled as such, with "Add to notes"), and an Edit mode (image-editor.js). A native <dialog> shown modal keeps focus inside; Escape closes and
// focus goes back to whatever opened it.
//
//   const viewer = openImageViewer({ sessionId, images, index, readOnly, onSaved, onClose });
//   viewer.update(image)   // an image changed (event stream): redrawn if shown
//   viewer.remove(imageId) // an image was deleted
//   viewer.close()

import { AiDescription, appendToNotes, laterAnalysis } from "./ai-description.js";
import { ApiError, api } from "./api.js";
import { h, icon } from "./dom.js";
import { clampPan, describeEdits, finalSize, fitScale, hasEdits, zoomAt } from "./edit-geometry.js";
import { drawAnnotations, drawPhoto } from "./edit-render.js";
import { ImageEditor, trapTab } from "./image-editor.js";
import { describeQualityWarning, formatTime } from "./format.js";

const ZOOM_STEP = 1.25;
const FIT_MAX = 2; // a small photo is enlarged to fit the screen at most twice
const RECENT = 3; // decoded photos kept while the viewer is open
const MARGIN = 24; // px of surround kept around a fitted photo

let current = null;

/**
 * Open the viewer on `images[index]`.
 * @param {{sessionId: string, images: object[], index?: number, readOnly?: boolean,
 *   onSaved?: (image: object) => void, onClose?: (image: object|null) => void}} options
 *   `images`: API images in gallery order (URLs may be missing or expired: fresh ones are fetched);
 *   `readOnly`: no Edit (a committed or ended session); `onSaved`: after edits are saved, with the image
 *   the server returned; `onClose`: after the viewer closes, with the image last shown.
 * @returns {{element: HTMLDialogElement, close(): void, update(image): void, remove(imageId): void,
 *   readonly index: number, readonly image: object}}
 */
export function openImageViewer(options) {
  current?.close();
  const viewer = new ImageViewer(options);
  current = viewer;
  return viewer.handle;
}

class ImageViewer {
  constructor({ sessionId, images, index = 0, readOnly = false, onSaved, onClose }) {
    this.sessionId = sessionId;
    this.images = images.map((image) => ({ ...image }));
    this.index = Math.max(0, Math.min(index, this.images.length - 1));
    this.readOnly = readOnly;
    this.onSaved = onSaved;
    this.onClose = onClose;
    this.opener = document.activeElement;
    this.view = { scale: 1, x: 0, y: 0 };
    this.fit = 1;
    this.loaded = null; // {id, img}: the photo shown
    this.recent = new Map(); // id → img: the last few photos, so stepping back is instant
    this.loadToken = 0;
    this.editor = null;
    this.pointers = new Map();
    this.dialog = this.build();
    document.body.append(this.dialog);
    this.dialog.showModal();
    this.resizeObserver = new ResizeObserver(() => this.relayout());
    this.resizeObserver.observe(this.stage);
    const self = this;
    this.handle = {
      element: this.dialog,
      close: () => this.close(),
      update: (image) => this.update(image),
      remove: (imageId) => this.remove(imageId),
      get index() { return self.index; },
      get image() { return self.image || null; },
    };
    this.show(this.index);
    this.stage.focus();
  }

  get image() {
    return this.images[this.index];
  }

  get zoomed() {
    return this.view.scale > this.fit * 1.001;
  }

  // -- building ------------------------------------------------------------------------------------------

  build() {
    const button = (label, iconName, onclick, extra = {}) => h("button", {
      type: "button", class: "vw-btn", "aria-label": label, title: label, onclick, ...extra,
    }, icon(iconName));
    this.title = h("h2", { class: "vw-title", id: "vw-title" });
    this.subtitle = h("p", { class: "vw-subtitle" });
    this.zoomOutButton = button("Zoom out (−)", "zoom-out", () => this.zoomBy(1 / ZOOM_STEP), { "aria-keyshortcuts": "-" });
    this.zoomInButton = button("Zoom in (+)", "zoom-in", () => this.zoomBy(ZOOM_STEP), { "aria-keyshortcuts": "+" });
    this.zoomLevel = h("button", {
      type: "button", class: "vw-zoom-level", title: "Fit to screen (0)", "aria-keyshortcuts": "0",
      onclick: () => this.fitView(),
    }, "Fit");
    this.editButton = h("button", {
      type: "button", class: "btn btn-on-dark", dataset: { testid: "viewer-edit" }, "aria-keyshortcuts": "E",
      onclick: () => this.startEdit(),
    }, icon("pencil"), "Edit");
    this.downloadLink = h("a", { class: "btn btn-on-dark", download: "" }, icon("download"), "Download");
    const closeButton = h("button", {
      type: "button", class: "vw-btn vw-close", "aria-label": "Close viewer", title: "Close (Esc)",
      dataset: { testid: "viewer-close" }, onclick: () => this.close(),
    }, icon("x"));
    this.viewControls = h("div", { class: "vw-controls" },
      h("div", { class: "vw-zoom", role: "group", "aria-label": "Zoom" }, this.zoomOutButton, this.zoomLevel, this.zoomInButton),
      this.editButton, this.downloadLink);
    const bar = h("header", { class: "vw-bar" },
      h("div", { class: "vw-heading" }, this.title, this.subtitle),
      this.viewControls, closeButton);

    this.canvas = h("canvas", { class: "vw-canvas", role: "img", dataset: { testid: "viewer-canvas" } });
    this.loading = h("div", { class: "vw-loading", "aria-hidden": "true" }, h("span", { class: "spinner" }));
    this.failure = h("div", { class: "vw-failure", role: "alert", hidden: true },
      icon("alert", "icon icon-lg"),
      h("p", {}, "This photo could not be loaded."),
      h("button", { type: "button", class: "btn btn-on-dark btn-sm", onclick: () => this.show(this.index, true) }, "Try again"));
    this.stage = h("div", {
      class: "vw-stage", tabindex: "0", role: "region", "aria-describedby": "vw-keys", dataset: { testid: "viewer-stage" },
    }, this.canvas, this.loading, this.failure);
    this.prevButton = h("button", {
      type: "button", class: "vw-nav vw-prev", onclick: () => this.step(-1), dataset: { testid: "viewer-prev" },
    }, icon("chevron-left"));
    this.nextButton = h("button", {
      type: "button", class: "vw-nav vw-next", onclick: () => this.step(1), dataset: { testid: "viewer-next" },
    }, icon("chevron-right"));
    this.viewArea = h("div", { class: "vw-view" }, this.stage, this.prevButton, this.nextButton);
    this.editArea = h("div", { class: "vw-edit", hidden: true });

    this.facts = h("dl", { class: "vw-facts" });
    this.badges = h("ul", { class: "vw-badges" });
    this.ai = new AiDescription({
      idPrefix: "vw", buttonClass: "btn btn-on-dark btn-sm", onAdd: (image) => this.addDescription(image),
    });
    this.caption = h("footer", { class: "vw-caption" },
      h("div", { class: "vw-caption-main" }, this.facts, this.badges, this.ai.element),
      h("p", { class: "vw-keys", id: "vw-keys" },
        kbd("←"), " ", kbd("→"), " photos · ", kbd("+"), " ", kbd("−"), " zoom · ", kbd("0"), " fit",
        this.readOnly ? "" : [" · ", kbd("E"), " edit"], " · ", kbd("Esc"), " close",
        h("span", { class: "visually-hidden" }, ". When zoomed in, the arrow keys move the photo.")));
    this.announcer = h("p", { class: "visually-hidden", "aria-live": "polite" });

    const dialog = h("dialog", {
      class: "viewer", "aria-labelledby": "vw-title", dataset: { testid: "image-viewer", mode: "view" },
    }, h("div", { class: "vw-shell" }, bar, h("div", { class: "vw-main" }, this.viewArea, this.editArea), this.caption, this.announcer));
    dialog.addEventListener("keydown", (event) => this.key(event));
    dialog.addEventListener("cancel", (event) => {
      // Escape is routed by key(); a cancel that still arrives (e.g. from the browser) closes only in view mode.
      event.preventDefault();
      if (!this.editor) this.close();
    });
    dialog.addEventListener("close", () => this.destroy());
    this.stage.addEventListener("wheel", (event) => this.wheel(event), { passive: false });
    this.stage.addEventListener("dblclick", (event) => this.doubleClick(event));
    this.stage.addEventListener("pointerdown", (event) => this.pointerDown(event));
    this.stage.addEventListener("pointermove", (event) => this.pointerMove(event));
    this.stage.addEventListener("pointerup", (event) => this.pointerUp(event));
    this.stage.addEventListener("pointercancel", (event) => this.pointerUp(event));
    return dialog;
  }

  // -- showing a photo -----------------------------------------------------------------------------------

  async show(index, retry = false) {
    this.index = index;
    const token = ++this.loadToken;
    const image = this.image;
    this.renderChrome();
    this.failure.hidden = true;
    const cached = retry ? null : this.recent.get(image.id);
    if (cached) {
      this.loaded = { id: image.id, img: cached };
    } else {
      this.loading.hidden = false;
      this.canvas.hidden = true;
      this.stage.dataset.state = "loading";
      try {
        const img = await this.loadOriginal(image, retry);
        if (token !== this.loadToken) return;
        this.loaded = { id: image.id, img };
        this.recent.delete(image.id);
        this.recent.set(image.id, img);
        while (this.recent.size > RECENT) this.recent.delete(this.recent.keys().next().value);
      } catch {
        if (token !== this.loadToken) return;
        this.loading.hidden = true;
        this.failure.hidden = false;
        this.stage.dataset.state = "error";
        return;
      }
    }
    this.stage.dataset.state = "ready";
    this.loading.hidden = true;
    this.canvas.hidden = false;
    this.draw();
    this.fitView();
  }

  /** The stored original: its signed URL may be missing (images from events) or expired, so ask again. */
  async loadOriginal(image, forceFresh) {
    let url = forceFresh ? null : image.urls?.full;
    if (url) {
      try {
        return await loadImage(url);
      } catch {
        url = null;
      }
    }
    const fresh = await api.getImage(this.sessionId, image.id);
    this.merge(fresh);
    return loadImage(fresh.urls.full);
  }

  merge(image) {
    const index = this.images.findIndex((other) => other.id === image.id);
    if (index < 0) return;
    const held = this.images[index];
    this.images[index] = {
      ...held, ...image, urls: image.urls || held.urls, analysis: laterAnalysis(held.analysis, image.analysis),
    };
  }

  /** "Add to notes" in the caption: the description appended to the stored notes, saved at once. */
  async addDescription(image) {
    if (this.readOnly) return;
    const notes = appendToNotes(image.metadata?.notes, image.analysis?.description);
    const updated = await api.updateImage(this.sessionId, image.id, { metadata: { notes } });
    this.merge(updated);
    this.onSaved?.(this.images.find((other) => other.id === updated.id));
    if (this.image?.id === updated.id) this.renderChrome();
    this.say("AI description added to the notes. Edit them in the details panel.");
  }

  /** Draw the shown photo with its saved edits, at the final picture's own pixel size. */
  draw() {
    const { img } = this.loaded;
    const edits = this.image.edits || {};
    const size = drawPhoto(this.canvas, img, edits.rotation || 0, edits.crop || null);
    if (edits.annotations?.length) drawAnnotations(this.canvas.getContext("2d"), edits.annotations, size);
    this.size = size;
    this.canvas.dataset.edited = String(hasEdits(edits));
  }

  renderChrome() {
    const image = this.image;
    const total = this.images.length;
    const metadata = image.metadata || {};
    const position = this.index + 1;
    this.title.textContent = `Photo ${position} of ${total}`;
    const words = image.words || {}; // the server's words for the metadata (consultcam/terminology/words.py)
    const side = metadata.laterality !== "not-applicable" ? words.laterality || "" : "";
    const site = [metadata.bodySite?.display, side.toLowerCase()].filter(Boolean).join(", ");
    this.subtitle.textContent = [metadata.label, site].filter(Boolean).join(" · ") || "No label or body site yet";
    this.subtitle.classList.toggle("is-empty", !metadata.label && !site);
    const taken = image.capturedAt || image.createdAt;
    this.canvas.setAttribute("aria-label", [
      `Photo ${position}`, metadata.label, site, taken ? `taken ${formatTime(taken)}` : "", describeEdits(image.edits),
    ].filter(Boolean).join(", "));
    this.stage.setAttribute("aria-label", `Photo ${position} of ${total}`);
    this.prevButton.setAttribute("aria-label", `Previous photo${position > 1 ? ` (photo ${position - 1})` : ""}`);
    this.nextButton.setAttribute("aria-label", `Next photo${position < total ? ` (photo ${position + 1})` : ""}`);
    this.prevButton.disabled = position <= 1;
    this.nextButton.disabled = position >= total;
    this.prevButton.hidden = this.nextButton.hidden = total < 2;
    this.keepFocus();
    this.editButton.hidden = this.readOnly;
    this.downloadLink.hidden = this.readOnly;
    this.downloadLink.href = api.downloadUrl(this.sessionId, image.id);
    this.downloadLink.setAttribute("aria-label", `Download photo ${position}${hasEdits(image.edits) ? " with edits" : ""}`);

    const facts = [
      ["Body site", metadata.bodySite?.display],
      ["Laterality", words.laterality],
      ["View", words.view],
      ["Taken", taken ? formatTaken(taken) : ""],
      ["Size", describeSize(image)],
      ["From", image.source === "desktop" ? "This computer" : image.source ? "Phone" : ""],
    ].filter(([, value]) => value);
    this.facts.replaceChildren(...facts.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
    if (metadata.notes) this.facts.append(h("div", { class: "vw-notes" }, h("dt", {}, "Notes"), h("dd", {}, metadata.notes)));

    const warnings = [...new Set((image.quality?.warnings || []).map(describeQualityWarning).filter(Boolean))];
    const badges = warnings.map((text) => h("li", { class: "badge badge-warn" }, icon("alert"), text));
    const edited = describeEdits(image.edits);
    if (edited) badges.push(h("li", { class: "badge badge-edited" }, icon("pencil"), `Edited: ${edited.toLowerCase()}`));
    this.badges.replaceChildren(...badges);
    this.badges.hidden = badges.length === 0;
    this.ai.update(image, { canAdd: !this.readOnly });
  }

  step(delta) {
    const next = this.index + delta;
    if (next < 0 || next >= this.images.length || this.editor) return;
    this.show(next);
    this.say(`Photo ${next + 1} of ${this.images.length}`);
  }

  update(image) {
    const index = this.images.findIndex((other) => other.id === image.id);
    if (index < 0) return;
    const before = JSON.stringify(this.images[index].edits || {});
    this.merge(image);
    if (index !== this.index || this.editor) return;
    this.renderChrome();
    if (this.loaded?.id === image.id && JSON.stringify(this.image.edits || {}) !== before) {
      this.draw();
      this.fitView();
    }
  }

  remove(imageId) {
    const index = this.images.findIndex((image) => image.id === imageId);
    if (index < 0) return;
    this.images.splice(index, 1);
    if (!this.images.length) {
      this.close();
      return;
    }
    if (index === this.index) {
      this.editor?.destroy();
      this.editor = null;
      this.setMode("view");
      this.loaded = null;
      this.recent.delete(imageId);
      this.show(Math.min(index, this.images.length - 1));
      this.say("This photo was deleted.");
    } else {
      if (index < this.index) this.index -= 1;
      this.renderChrome();
    }
  }

  // -- zoom and pan --------------------------------------------------------------------------------------

  limits() {
    const stage = { width: this.stage.clientWidth, height: this.stage.clientHeight };
    return { size: this.size || { width: 1, height: 1 }, stage, minScale: this.fit, maxScale: Math.max(4, this.fit * 4) };
  }

  relayout() {
    if (!this.size || this.editor) return;
    const wasFit = !this.zoomed;
    this.fit = this.fitScale();
    if (wasFit) this.fitView();
    else this.apply(clampPan({ ...this.view, scale: Math.max(this.view.scale, this.fit) }, this.limits()));
  }

  fitScale() {
    const room = { width: this.stage.clientWidth - 2 * MARGIN, height: this.stage.clientHeight - 2 * MARGIN };
    return fitScale(this.size, room, FIT_MAX);
  }

  fitView() {
    if (!this.size) return;
    this.fit = this.fitScale();
    this.apply(clampPan({ scale: this.fit, x: 0, y: 0 }, this.limits()));
  }

  zoomBy(factor, at = null) {
    if (!this.size) return;
    const point = at || { x: this.stage.clientWidth / 2, y: this.stage.clientHeight / 2 };
    this.apply(zoomAt(this.view, factor, point, this.limits()));
  }

  pan(dx, dy) {
    this.apply(clampPan({ ...this.view, x: this.view.x + dx, y: this.view.y + dy }, this.limits()));
  }

  apply(view) {
    this.view = view;
    const width = this.size.width * view.scale;
    const height = this.size.height * view.scale;
    Object.assign(this.canvas.style, {
      width: `${width}px`, height: `${height}px`, transform: `translate(${view.x}px, ${view.y}px)`,
    });
    const percent = Math.round(view.scale * 100);
    this.zoomLevel.textContent = this.zoomed ? `${percent}%` : "Fit";
    this.zoomLevel.setAttribute("aria-label", `Zoom ${percent}%. Fit to screen`);
    this.stage.dataset.zoom = view.scale.toFixed(4);
    this.stage.dataset.zoomed = String(this.zoomed);
    const limits = this.limits();
    this.zoomInButton.disabled = view.scale >= limits.maxScale - 1e-6;
    this.zoomOutButton.disabled = !this.zoomed;
    this.keepFocus();
  }

  /** A control that just became disabled (the last photo, the furthest zoom) hands focus to the photo. */
  keepFocus() {
    const active = document.activeElement;
    if (!this.dialog.open || this.editor) return;
    if (!active || active.disabled || !this.dialog.contains(active)) this.stage.focus({ preventScroll: true });
  }

  stagePoint(event) {
    const rect = this.stage.getBoundingClientRect();
    return { x: event.clientX - rect.left, y: event.clientY - rect.top };
  }

  wheel(event) {
    if (!this.size) return;
    event.preventDefault();
    const delta = event.deltaMode === 1 ? event.deltaY * 16 : event.deltaY;
    this.zoomBy(Math.exp(-delta * (event.ctrlKey ? 0.01 : 0.0022)), this.stagePoint(event));
  }

  doubleClick(event) {
    if (!this.size) return;
    if (this.zoomed) this.fitView();
    else this.apply(zoomAt(this.view, Math.max(2, 1 / this.fit) , this.stagePoint(event), this.limits()));
  }

  pointerDown(event) {
    if (event.target.closest("button")) return;
    this.pointers.set(event.pointerId, this.stagePoint(event));
    this.stage.setPointerCapture(event.pointerId);
    if (this.pointers.size === 2) {
      const [a, b] = [...this.pointers.values()];
      this.pinch = { distance: Math.hypot(a.x - b.x, a.y - b.y) || 1 };
    }
    this.stage.dataset.dragging = String(this.zoomed);
  }

  pointerMove(event) {
    const previous = this.pointers.get(event.pointerId);
    if (!previous) return;
    const point = this.stagePoint(event);
    this.pointers.set(event.pointerId, point);
    if (this.pointers.size === 2 && this.pinch) {
      const [a, b] = [...this.pointers.values()];
      const distance = Math.hypot(a.x - b.x, a.y - b.y) || 1;
      this.zoomBy(distance / this.pinch.distance, { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 });
      this.pinch.distance = distance;
    } else if (this.pointers.size === 1 && this.zoomed) {
      this.pan(point.x - previous.x, point.y - previous.y);
    }
  }

  pointerUp(event) {
    this.pointers.delete(event.pointerId);
    if (this.pointers.size < 2) this.pinch = null;
    this.stage.dataset.dragging = "false";
  }

  // -- keyboard ------------------------------------------------------------------------------------------

  key(event) {
    trapTab(event, this.dialog);
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      if (this.editor) this.editor.handleEscape();
      else this.close();
      return;
    }
    if (this.editor || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, textarea, select")) return;
    const onButton = event.target.closest("button, a");
    const panStep = Math.round(Math.min(this.stage.clientWidth, this.stage.clientHeight) * 0.15);
    switch (event.key) {
      case "+": case "=":
        this.zoomBy(ZOOM_STEP);
        break;
      case "-": case "_":
        this.zoomBy(1 / ZOOM_STEP);
        break;
      case "0":
        this.fitView();
        break;
      case "e": case "E":
        if (this.readOnly) return;
        this.startEdit();
        break;
      case "ArrowLeft":
        if (this.zoomed) this.pan(panStep, 0);
        else this.step(-1);
        break;
      case "ArrowRight":
        if (this.zoomed) this.pan(-panStep, 0);
        else this.step(1);
        break;
      case "ArrowUp":
        if (!this.zoomed) return;
        this.pan(0, panStep);
        break;
      case "ArrowDown":
        if (!this.zoomed) return;
        this.pan(0, -panStep);
        break;
      case "Home":
        if (onButton) return;
        this.step(-this.index);
        break;
      case "End":
        if (onButton) return;
        this.step(this.images.length - 1 - this.index);
        break;
      default:
        return;
    }
    event.preventDefault();
  }

  // -- edit mode -----------------------------------------------------------------------------------------

  startEdit() {
    if (this.readOnly || this.editor || !this.loaded || this.loaded.id !== this.image.id) return;
    const image = this.image;
    this.editor = new ImageEditor({
      sessionId: this.sessionId,
      image,
      img: this.loaded.img,
      onSaved: (updated) => {
        this.merge(updated);
        this.onSaved?.(this.images.find((other) => other.id === updated.id));
      },
      onClose: (reason) => this.endEdit(reason),
    });
    this.editArea.replaceChildren(this.editor.element);
    this.setMode("edit");
    this.editor.start();
  }

  endEdit(reason) {
    this.editor?.destroy();
    this.editor = null;
    this.setMode("view");
    this.draw();
    this.fitView();
    this.editButton.focus();
    this.say(reason === "saved"
      ? (hasEdits(this.image.edits) ? "Edits saved." : "Edits cleared: the original photo is restored.")
      : "Editing cancelled. Nothing was changed.");
  }

  setMode(mode) {
    this.dialog.dataset.mode = mode;
    this.viewArea.hidden = mode !== "view";
    this.editArea.hidden = mode !== "edit";
    this.viewControls.hidden = mode !== "view";
    this.caption.hidden = mode !== "view";
    this.renderChrome();
    if (mode === "edit") this.subtitle.textContent = `Editing · ${this.subtitle.textContent}`;
  }

  // -- closing -------------------------------------------------------------------------------------------

  say(message) {
    this.announcer.textContent = "";
    setTimeout(() => { this.announcer.textContent = message; }, 30);
  }

  close() {
    if (this.dialog.open) this.dialog.close();
    else this.destroy();
  }

  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    this.loadToken += 1;
    this.recent.clear();
    this.resizeObserver.disconnect();
    this.editor?.destroy();
    this.dialog.remove();
    if (current === this) current = null;
    const opener = this.opener;
    if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
    this.onClose?.(this.image || null);
  }
}

/** "1600 × 1067 px", or with edits "854 × 1200 px (original 1600 × 1067)". */
function describeSize(image) {
  if (!image.width || !image.height) return "";
  const original = `${image.width} × ${image.height}`;
  const edits = image.edits || {};
  if (!hasEdits(edits)) return `${original} px`;
  const size = finalSize({ width: image.width, height: image.height }, edits.rotation || 0, edits.crop || null);
  return size.width === image.width && size.height === image.height
    ? `${original} px`
    : `${size.width} × ${size.height} px (original ${original})`;
}

function kbd(text) {
  return h("kbd", {}, text);
}

function formatTaken(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const day = new Intl.DateTimeFormat("en-NZ", { day: "numeric", month: "short", year: "numeric" }).format(date);
  return `${day}, ${formatTime(iso)}`;
}

/** Load a URL into an <img>; rejects on error. Photos are `no-store`: nothing is kept but this element. */
function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.decoding = "async";
    img.onload = () => resolve(img);
    img.onerror = () => reject(new ApiError(0, "ImageLoadFailed", "The photo could not be loaded."));
    img.src = url;
  });
}

// The desktop image viewer: a modal lightbox over the gallery showing one photo at a time with its edits
// drawn as they will be committed, zoom and pan, previous/next, the photo's metadata, quality warnings and
// AI description (labelled as such, with "Add to notes"), and an Edit mode (image-editor.js). A native
// <dialog> shown modal keeps focus inside; Escape closes and focus goes back to whatever opened it.
// This module is the viewer's life: which photo is shown, loading it, keeping it current, edit mode and
// closing. Its parts: viewer-dialog.js (markup), viewer-details.js (caption), viewer-zoom.js and
// pan-zoom.js (zoom and pan), viewer-keys.js (keyboard).
//
//   const viewer = openImageViewer({ sessionId, images, index, readOnly, onSaved, onClose });
//   viewer.update(image)   // an image changed (event stream): redrawn if shown
//   viewer.remove(imageId) // an image was deleted
//   viewer.close()

import { appendToNotes, laterAnalysis } from "./ai-description.js";
import { ApiError, api } from "./api.js";
import { hasEdits } from "./edit-geometry.js";
import { drawAnnotations, drawPhoto } from "./edit-render.js";
import { ImageEditor } from "./image-editor.js";
import { buildViewer } from "./viewer-dialog.js";
import { renderDetails } from "./viewer-details.js";
import { handleViewerKey } from "./viewer-keys.js";
import { ViewerZoom } from "./viewer-zoom.js";

const RECENT = 3; // decoded photos kept while the viewer is open

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
    this.loaded = null; // {id, img}: the photo shown
    this.recent = new Map(); // id → img: the last few photos, so stepping back is instant
    this.loadToken = 0;
    this.editor = null;
    this.ui = buildViewer({
      readOnly,
      zoomIn: () => this.zoom.zoomIn(),
      zoomOut: () => this.zoom.zoomOut(),
      fit: () => this.zoom.fitView(),
      edit: () => this.startEdit(),
      close: () => this.close(),
      retry: () => this.show(this.index, true),
      previous: () => this.step(-1),
      next: () => this.step(1),
      addDescription: (image) => this.addDescription(image),
    });
    this.zoom = new ViewerZoom(this.ui, () => this.keepFocus());
    const { dialog, stage } = this.ui;
    dialog.addEventListener("keydown", (event) => handleViewerKey(event, this));
    dialog.addEventListener("cancel", (event) => {
      // Escape is routed by handleViewerKey(); a cancel that still arrives (e.g. from the browser) closes
      // only in view mode.
      event.preventDefault();
      if (!this.editor) this.close();
    });
    dialog.addEventListener("close", () => this.destroy());
    document.body.append(dialog);
    dialog.showModal();
    this.resizeObserver = new ResizeObserver(() => { if (!this.editor) this.zoom.relayout(); });
    this.resizeObserver.observe(stage);
    const self = this;
    this.handle = {
      element: dialog,
      close: () => this.close(),
      update: (image) => this.update(image),
      remove: (imageId) => this.remove(imageId),
      get index() { return self.index; },
      get image() { return self.image || null; },
    };
    this.show(this.index);
    stage.focus();
  }

  get image() {
    return this.images[this.index];
  }

  get count() {
    return this.images.length;
  }

  get dialog() {
    return this.ui.dialog;
  }

  // -- showing a photo -----------------------------------------------------------------------------------

  async show(index, retry = false) {
    const { canvas, failure, loading, stage } = this.ui;
    this.index = index;
    const token = ++this.loadToken;
    const image = this.image;
    this.renderChrome();
    failure.hidden = true;
    const cached = retry ? null : this.recent.get(image.id);
    if (cached) {
      this.loaded = { id: image.id, img: cached };
    } else {
      loading.hidden = false;
      canvas.hidden = true;
      stage.dataset.state = "loading";
      try {
        const img = await this.loadOriginal(image, retry);
        if (token !== this.loadToken) return;
        this.loaded = { id: image.id, img };
        this.recent.delete(image.id);
        this.recent.set(image.id, img);
        while (this.recent.size > RECENT) this.recent.delete(this.recent.keys().next().value);
      } catch {
        if (token !== this.loadToken) return;
        loading.hidden = true;
        failure.hidden = false;
        stage.dataset.state = "error";
        return;
      }
    }
    stage.dataset.state = "ready";
    loading.hidden = true;
    canvas.hidden = false;
    this.draw();
    this.zoom.fitView();
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
    const { canvas } = this.ui;
    const { img } = this.loaded;
    const edits = this.image.edits || {};
    const size = drawPhoto(canvas, img, edits.rotation || 0, edits.crop || null);
    if (edits.annotations?.length) drawAnnotations(canvas.getContext("2d"), edits.annotations, size);
    this.zoom.size = size;
    canvas.dataset.edited = String(hasEdits(edits));
  }

  renderChrome() {
    const { downloadLink, editButton, nextButton, prevButton, stage } = this.ui;
    const image = this.image;
    const total = this.images.length;
    const position = this.index + 1;
    renderDetails(this.ui, image, { position, total, readOnly: this.readOnly });
    stage.setAttribute("aria-label", `Photo ${position} of ${total}`);
    prevButton.setAttribute("aria-label", `Previous photo${position > 1 ? ` (photo ${position - 1})` : ""}`);
    nextButton.setAttribute("aria-label", `Next photo${position < total ? ` (photo ${position + 1})` : ""}`);
    prevButton.disabled = position <= 1;
    nextButton.disabled = position >= total;
    prevButton.hidden = nextButton.hidden = total < 2;
    this.keepFocus();
    editButton.hidden = this.readOnly;
    downloadLink.hidden = this.readOnly;
    downloadLink.href = api.downloadUrl(this.sessionId, image.id);
    downloadLink.setAttribute("aria-label", `Download photo ${position}${hasEdits(image.edits) ? " with edits" : ""}`);
  }

  /** A control that just became disabled (the last photo, the furthest zoom) hands focus to the photo. */
  keepFocus() {
    const active = document.activeElement;
    if (!this.ui.dialog.open || this.editor) return;
    if (!active || active.disabled || !this.ui.dialog.contains(active)) this.ui.stage.focus({ preventScroll: true });
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
      this.zoom.fitView();
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
    this.ui.editArea.replaceChildren(this.editor.element);
    this.setMode("edit");
    this.editor.start();
  }

  endEdit(reason) {
    this.editor?.destroy();
    this.editor = null;
    this.setMode("view");
    this.draw();
    this.zoom.fitView();
    this.ui.editButton.focus();
    this.say(reason === "saved"
      ? (hasEdits(this.image.edits) ? "Edits saved." : "Edits cleared: the original photo is restored.")
      : "Editing cancelled. Nothing was changed.");
  }

  setMode(mode) {
    const { caption, dialog, editArea, subtitle, viewArea, viewControls } = this.ui;
    dialog.dataset.mode = mode;
    viewArea.hidden = mode !== "view";
    editArea.hidden = mode !== "edit";
    viewControls.hidden = mode !== "view";
    caption.hidden = mode !== "view";
    this.renderChrome();
    if (mode === "edit") subtitle.textContent = `Editing · ${subtitle.textContent}`;
  }

  // -- closing -------------------------------------------------------------------------------------------

  say(message) {
    const { announcer } = this.ui;
    announcer.textContent = "";
    setTimeout(() => { announcer.textContent = message; }, 30);
  }

  close() {
    if (this.ui.dialog.open) this.ui.dialog.close();
    else this.destroy();
  }

  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    this.loadToken += 1;
    this.recent.clear();
    this.resizeObserver.disconnect();
    this.editor?.destroy();
    this.ui.dialog.remove();
    if (current === this) current = null;
    const opener = this.opener;
    if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
    this.onClose?.(this.image || null);
  }
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

// The non-destructive edit canvas of the image viewer: rotate, crop, and annotate (arrow, circle, text),
// then PATCH the photo's `edits`. The original is never changed; Pillow burns the edits in on download and
// commit (consultcam/images/processing/render.py), and edit-render.js draws them the same way here.
//
// This module is the dialog: it holds the tool, the selection and the text-label form, and saves or
// cancels. The working copy and its operations are the EditModel (edit-model.js, no DOM); the drawing is
// EditCanvas (edit-canvas.js); pointer and keys are EditInput (edit-input.js); the controls are built by
// edit-toolbar.js.

import { ApiError, api } from "./api.js";
import { h } from "./dom.js";
import { EditCanvas } from "./edit-canvas.js";
import { MAX_ANNOTATIONS, clamp } from "./edit-geometry.js";
import { EditInput } from "./edit-input.js";
import { EditModel, defaultShape } from "./edit-model.js";
import { textLayout } from "./edit-render.js";
import { NAMES, TOOLS, buildEditorParts, renderCropInputs, renderPanel } from "./edit-toolbar.js";

export class ImageEditor {
  /**
   * @param {{sessionId: string, image: object, img: HTMLImageElement, onSaved(image): void,
   *   onClose(reason: "saved"|"cancelled"): void}} options
   *   `image` is the API image (its `edits` are the starting point); `img` the loaded original photo.
   */
  constructor({ sessionId, image, img, onSaved, onClose }) {
    this.sessionId = sessionId;
    this.image = image;
    this.img = img;
    this.onSaved = onSaved;
    this.onClose = onClose;
    this.model = new EditModel(image.edits, { onRemember: () => { this.parts.error.hidden = true; } });
    this.tool = "arrow";
    this.selected = null;
    this.saving = false;
    this.pendingText = null;
    this.parts = buildEditorParts(this);
    Object.assign(this, {
      element: this.parts.root, canvas: this.parts.canvas, cropBox: this.parts.cropBox, frame: this.parts.frame,
      stage: this.parts.stage,
    });
    this.surface = new EditCanvas({ img, canvas: this.canvas, frame: this.frame, cropBox: this.cropBox, stage: this.stage });
    this.input = new EditInput(this);
    this.input.attach(this.frame, this.element);
    this.resizeObserver = new ResizeObserver(() => this.render());
  }

  /** Call once the element is in the document: lays out, draws and focuses the first tool. */
  start() {
    this.resizeObserver.observe(this.stage);
    this.setTool(this.tool);
    this.render();
    this.parts.toolButtons.get(this.tool).focus();
  }

  destroy() {
    this.resizeObserver.disconnect();
    this.element.remove();
  }

  get dirty() {
    return this.model.dirty;
  }

  /** The crop applied to what is shown (rotated frame): none while the crop tool shows the whole photo. */
  get viewCrop() {
    return this.model.viewCrop(this.tool === "crop");
  }

  /** Escape: close the innermost thing open. Returns true when it did something. */
  handleEscape() {
    if (this.parts.textEntry.hidden === false) {
      this.closeTextEntry();
      return true;
    }
    if (this.input.abort()) return true;
    this.cancel();
    return true;
  }

  // -- state changes -------------------------------------------------------------------------------------

  setTool(id) {
    const { toolButtons, hint, cropFields } = this.parts;
    this.tool = id;
    for (const [toolId, button] of toolButtons) button.setAttribute("aria-pressed", String(toolId === id));
    const tool = TOOLS.find((t) => t.id === id);
    hint.textContent = `${tool.hint} ${id === "crop" ? "" : "With the picture focused, Enter adds one in the middle."}`.trim();
    this.frame.setAttribute("aria-label", `Photo being edited. ${tool.label} tool.`);
    this.frame.dataset.tool = id;
    if (id === "crop") this.selected = null;
    cropFields.hidden = id !== "crop";
    this.closeTextEntry(false);
    this.render();
  }

  /** Select annotation `id` (or nothing for null) and redraw. */
  select(id) {
    this.selected = id;
    this.render();
  }

  undo() {
    if (!this.model.undo()) return;
    if (this.selected && !this.model.find(this.selected)) this.selected = null;
    this.render();
  }

  rotate(degrees) {
    const rotation = this.model.rotate(degrees);
    this.render();
    this.say(`Rotated to ${rotation}°.`);
  }

  clearAll() {
    if (!this.model.clear()) return;
    this.selected = null;
    this.render();
    this.say("All edits removed. Save to restore the original photo, or Undo.");
  }

  resetCrop() {
    if (this.model.resetCrop()) this.render();
  }

  cropFromInputs() {
    const value = (key) => clamp((Number(this.parts.cropInputs[key].value) || 0) / 100, 0, 1);
    this.model.cropTo({ x: value("x"), y: value("y"), width: value("width") || 1, height: value("height") || 1 });
    this.render();
  }

  /**
   * A shape of `type` drawn from `from` to `to` (shown-frame fractions), or placed at `to` when `from` is
   * null (a click or Enter): a default-size arrow pointing at it or circle around it; text opens the form.
   */
  placeShape(type, from, to) {
    if (type === "text") {
      this.openTextEntry(to);
      return;
    }
    const [a, b] = from ? [from, to] : defaultShape(type, to, this.surface.layout.size);
    this.added(this.model.addDrawn(type, a, b, this.viewCrop));
  }

  /** After an add: select the new annotation and say so, or say why there was none. */
  added(annotation) {
    if (!annotation) {
      this.say(`A photo can carry at most ${MAX_ANNOTATIONS} annotations.`);
      return;
    }
    this.selected = annotation.id;
    this.render();
    this.say(`${NAMES[annotation.type]} added.`);
  }

  deleteAnnotation(id) {
    const removed = this.model.remove(id);
    if (!removed) return;
    if (this.selected === id) this.selected = null;
    this.render();
    this.say(`${NAMES[removed.type]} deleted.`);
  }

  /** The panel's list: choose an annotation, switching to the select tool. */
  choose(id) {
    this.selected = id;
    if (this.tool !== "select") this.setTool("select");
    else this.render();
  }

  // -- text labels ---------------------------------------------------------------------------------------

  openTextEntry(point) {
    if (this.model.full) {
      this.say(`A photo can carry at most ${MAX_ANNOTATIONS} annotations.`);
      return;
    }
    const { textEntry, textInput } = this.parts;
    this.pendingText = point;
    const rect = this.canvas.getBoundingClientRect();
    const stageRect = this.stage.getBoundingClientRect();
    const left = rect.left - stageRect.left + point.x * rect.width;
    const top = rect.top - stageRect.top + point.y * rect.height;
    textEntry.hidden = false;
    const width = textEntry.offsetWidth;
    const height = textEntry.offsetHeight;
    textEntry.style.left = `${clamp(left, 8, stageRect.width - width - 8)}px`;
    textEntry.style.top = `${clamp(top + 12, 8, stageRect.height - height - 8)}px`;
    textInput.value = "";
    textInput.focus();
  }

  commitText() {
    const { textInput } = this.parts;
    const words = textInput.value.trim();
    if (!words) {
      textInput.focus();
      this.say("Type the label's words, or press Escape.");
      return;
    }
    const at = this.pendingText;
    this.closeTextEntry(false);
    this.added(this.model.addText(at, words, this.viewCrop));
    this.frame.focus();
  }

  closeTextEntry(refocus = true) {
    if (this.parts.textEntry.hidden) return;
    this.parts.textEntry.hidden = true;
    this.pendingText = null;
    if (refocus) this.frame.focus();
  }

  // -- drawing -------------------------------------------------------------------------------------------

  render() {
    const cropping = this.tool === "crop";
    this.surface.draw(this.model, { cropping, selected: this.selected, draft: this.input.draft });
    if (cropping) renderCropInputs(this.parts, this.model.rotatedCrop);
    renderPanel(this.parts, this.model, this.selected, this);
  }

  say(message) {
    this.parts.note.textContent = message;
  }

  // -- saving --------------------------------------------------------------------------------------------

  /** The PATCH body's `edits`, with each text label's box measured on this canvas. */
  serverEdits() {
    const ctx = this.canvas.getContext("2d");
    return this.model.serverEdits(this.surface.natural, (item, size) => textLayout(ctx, item, size).box);
  }

  async save() {
    if (this.saving) return;
    const { error, saveButton } = this.parts;
    this.saving = true;
    error.hidden = true;
    saveButton.disabled = true;
    saveButton.lastChild.textContent = "Saving…";
    try {
      const updated = await api.updateImage(this.sessionId, this.image.id, { edits: this.serverEdits() });
      this.onSaved?.(updated);
      this.onClose?.("saved");
    } catch (err) {
      error.textContent = err instanceof ApiError
        ? `Not saved. ${err.detail}`
        : "Not saved: the edits could not be sent. Check the connection and try again.";
      error.hidden = false;
    } finally {
      this.saving = false;
      saveButton.disabled = false;
      saveButton.lastChild.textContent = "Save edits";
    }
  }

  /** Leave without saving; asks first when there are changes. */
  async cancel() {
    if (this.dirty && !(await confirmDiscard(this.element))) return;
    this.onClose?.("cancelled");
  }
}

/** A small modal question over the editor: resolves true to discard. */
function confirmDiscard(host) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "dialog", "aria-labelledby": "ed-discard-title", dataset: { testid: "editor-discard" } },
      h("form", { method: "dialog", class: "dialog-body" },
        h("h2", { class: "dialog-title", id: "ed-discard-title" }, "Discard your changes?"),
        h("p", {}, "The rotation, crop and annotations you made since the last save are lost. The photo stays as it was."),
        h("div", { class: "dialog-actions" },
          h("button", { type: "submit", class: "btn btn-quiet", value: "keep", autofocus: true }, "Keep editing"),
          h("button", { type: "submit", class: "btn btn-danger", value: "discard" }, "Discard changes"))));
    host.append(dialog);
    dialog.addEventListener("keydown", (event) => {
      event.stopPropagation();
      trapTab(event, dialog);
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "discard");
    }, { once: true });
    dialog.showModal();
  });
}

/**
 * Keep Tab inside `container` (a modal): from the last control Tab goes to the first, and Shift+Tab from the
 * first to the last, instead of leaving for the browser's own controls. Call from a keydown listener.
 */
export function trapTab(event, container) {
  if (event.key !== "Tab" || event.defaultPrevented) return;
  const focusable = [...container.querySelectorAll(
    "button, [href], input, select, textarea, [tabindex]:not([tabindex='-1'])",
  )].filter((el) => el instanceof HTMLElement && !el.disabled && el.tabIndex >= 0 && el.getClientRects().length > 0
    && !el.closest("[hidden], [inert]"));
  if (!focusable.length) return;
  const first = focusable[0];
  const last = focusable[focusable.length - 1];
  const active = document.activeElement;
  if (event.shiftKey && (active === first || !container.contains(active))) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && (active === last || !container.contains(active))) {
    event.preventDefault();
    first.focus();
  }
}

// The non-destructive edit canvas of the image viewer: rotate, crop, and annotate (arrow, circle, text),
// then PATCH the photo's `edits`. The original is never changed; Pillow burns the edits in on download and
// commit (consultcam/images/processing.py), and edit-render.js draws them the same way here.
//
// Working copy: `{rotation, crop, annotations}` with crop and annotations in fractions of the ORIGINAL photo
// (edit-geometry.js), so a rotation or a new crop keeps every mark on the thing it points at.

import { ApiError, api } from "./api.js";
import { h, icon } from "./dom.js";
import {
  DEFAULT_COLOR, MAX_ANNOTATIONS, MAX_TEXT_LENGTH, MIN_CROP, annotationToFinal, clamp, clampCrop, dragCrop,
  finalSize, fitScale, fromServerEdits, fromView, isFullCrop, normaliseRotation, rectFromPoints, rotateRect,
  screenToFraction, toServerEdits, toView, unrotateRect,
} from "./edit-geometry.js";
import { annotationStyle, drawAnnotation, drawPhoto, textLayout } from "./edit-render.js";

const TOOLS = [
  { id: "select", label: "Select", key: "v", icon: "cursor", hint: "Click a mark to select it; drag to move it. Delete removes it." },
  { id: "arrow", label: "Arrow", key: "a", icon: "annot-arrow", hint: "Drag from the tail to the point. A click places a short arrow pointing at the spot." },
  { id: "circle", label: "Circle", key: "o", icon: "annot-circle", hint: "Drag a box around the area to ring it. A click places a small circle." },
  { id: "text", label: "Text", key: "t", icon: "annot-text", hint: "Click where the label should start, then type the words." },
  { id: "crop", label: "Crop", key: "c", icon: "crop", hint: "Drag the handles or the box; drag outside it to draw a new one. Arrow keys move it, Shift+arrow keys resize it." },
];
const NAMES = { arrow: "Arrow", circle: "Circle", text: "Text" };
const KEY_STEP = 0.01;
const KEY_STEP_BIG = 0.05;
const CLICK_PX = 5; // a press that moves less than this is a click, not a drag
const HIT_PX = 8;
const UNDO_LIMIT = 100;

let nextId = 1;
const newId = () => `m${Date.now().toString(36)}${(nextId++).toString(36)}`;

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
    this.model = fromServerEdits(image.edits);
    this.initial = JSON.stringify(toServerEdits(this.model).edits);
    this.undoStack = [];
    this.tool = "arrow";
    this.selected = null;
    this.draft = null;
    this.gesture = null;
    this.saving = false;
    this.base = { key: "", canvas: document.createElement("canvas") };
    this.layout = { scale: 1, size: { width: 1, height: 1 } };
    this.element = this.build();
    this.resizeObserver = new ResizeObserver(() => this.render());
  }

  /** Call once the element is in the document: lays out, draws and focuses the first tool. */
  start() {
    this.resizeObserver.observe(this.stage);
    this.setTool(this.tool);
    this.render();
    this.toolButtons.get(this.tool).focus();
  }

  destroy() {
    this.resizeObserver.disconnect();
    this.element.remove();
  }

  get dirty() {
    return JSON.stringify(toServerEdits(this.model).edits) !== this.initial;
  }

  /** Escape: close the innermost thing open. Returns true when it did something. */
  handleEscape() {
    if (this.textEntry.hidden === false) {
      this.closeTextEntry();
      return true;
    }
    if (this.gesture) {
      this.gesture = null;
      this.draft = null;
      this.render();
      return true;
    }
    this.cancel();
    return true;
  }

  // -- building ------------------------------------------------------------------------------------------

  build() {
    this.toolButtons = new Map();
    const toolGroup = h("div", { class: "ed-group", role: "group", "aria-label": "Tool" },
      TOOLS.map((tool) => {
        const button = h("button", {
          type: "button", class: "ed-btn", "aria-pressed": "false", "aria-keyshortcuts": tool.key.toUpperCase(),
          title: `${tool.label} (${tool.key.toUpperCase()})`, dataset: { tool: tool.id },
          onclick: () => this.setTool(tool.id),
        }, icon(tool.icon), h("span", { class: "ed-btn-label" }, tool.label));
        this.toolButtons.set(tool.id, button);
        return button;
      }));
    const rotateLeft = h("button", {
      type: "button", class: "ed-btn", title: "Rotate left ([)", "aria-keyshortcuts": "[",
      onclick: () => this.rotate(-90),
    }, icon("rotate-ccw"), h("span", { class: "ed-btn-label" }, "Rotate left"));
    const rotateRight = h("button", {
      type: "button", class: "ed-btn", title: "Rotate right (])", "aria-keyshortcuts": "]",
      onclick: () => this.rotate(90),
    }, icon("rotate-cw"), h("span", { class: "ed-btn-label" }, "Rotate right"));
    this.undoButton = h("button", {
      type: "button", class: "ed-btn", title: "Undo (Ctrl+Z)", "aria-keyshortcuts": "Control+Z Meta+Z",
      disabled: true, onclick: () => this.undo(),
    }, icon("undo"), h("span", { class: "ed-btn-label" }, "Undo"));
    this.clearButton = h("button", {
      type: "button", class: "ed-btn", title: "Remove every edit: the original photo", onclick: () => this.clearAll(),
    }, icon("x-circle"), h("span", { class: "ed-btn-label" }, "Clear edits"));
    this.cancelButton = h("button", { type: "button", class: "btn btn-on-dark", onclick: () => this.cancel() }, "Cancel");
    this.saveButton = h("button", {
      type: "button", class: "btn btn-primary", dataset: { testid: "editor-save" }, onclick: () => this.save(),
    }, icon("check"), "Save edits");

    const toolbar = h("div", { class: "ed-toolbar" },
      toolGroup,
      h("div", { class: "ed-group", role: "group", "aria-label": "Rotate" }, rotateLeft, rotateRight),
      h("div", { class: "ed-group", role: "group", "aria-label": "History" }, this.undoButton, this.clearButton),
      h("div", { class: "ed-actions" }, this.cancelButton, this.saveButton));

    this.canvas = h("canvas", { class: "ed-canvas", "aria-hidden": "true" });
    this.cropBox = h("div", { class: "ed-crop", hidden: true, "aria-hidden": "true" },
      ["nw", "n", "ne", "e", "se", "s", "sw", "w"].map((edge) => h("span", { class: `ed-handle ed-handle-${edge}`, dataset: { edge } })));
    this.hintId = `ed-hint-${Math.random().toString(36).slice(2, 8)}`;
    this.frame = h("div", {
      class: "ed-frame", tabindex: "0", role: "application", "aria-roledescription": "drawing area",
      "aria-describedby": this.hintId, dataset: { testid: "editor-canvas" },
    }, this.canvas, this.cropBox);
    this.textInput = h("input", {
      type: "text", id: `${this.hintId}-text`, maxlength: String(MAX_TEXT_LENGTH), autocomplete: "off", spellcheck: "true",
      placeholder: "e.g. Lesion 6 mm",
    });
    this.textEntry = h("form", { class: "ed-text-entry", hidden: true, "aria-label": "Text label" },
      h("label", { for: this.textInput.id }, "Label text"),
      this.textInput,
      h("div", { class: "ed-text-actions" },
        h("button", { type: "button", class: "btn btn-quiet btn-sm", onclick: () => this.closeTextEntry() }, "Cancel"),
        h("button", { type: "submit", class: "btn btn-primary btn-sm" }, "Add label")));
    this.textEntry.addEventListener("submit", (event) => { event.preventDefault(); this.commitText(); });
    this.stage = h("div", { class: "ed-stage" }, this.frame, this.textEntry);

    this.hint = h("p", { class: "ed-hint", id: this.hintId });
    this.cropInputs = {};
    const cropField = (key, label) => {
      const input = h("input", {
        type: "number", min: "0", max: "100", step: "0.5", inputmode: "decimal", id: `${this.hintId}-crop-${key}`,
      });
      input.addEventListener("change", () => this.cropFromInputs());
      this.cropInputs[key] = input;
      return h("div", { class: "ed-field" }, h("label", { for: input.id }, label), input);
    };
    this.cropFields = h("fieldset", { class: "ed-crop-fields", hidden: true },
      h("legend", {}, "Crop, as % of the rotated photo"),
      h("div", { class: "ed-field-grid" },
        cropField("x", "Left"), cropField("y", "Top"), cropField("width", "Width"), cropField("height", "Height")),
      h("button", { type: "button", class: "btn btn-on-dark btn-sm", onclick: () => this.resetCrop() }, "Reset crop"));
    this.list = h("ol", { class: "ed-list", "aria-label": "Annotations" });
    this.listEmpty = h("p", { class: "ed-empty" }, "No annotations yet.");
    this.note = h("p", { class: "ed-note", role: "status" });
    this.error = h("p", { class: "notice notice-error ed-error", role: "alert", hidden: true, dataset: { testid: "editor-error" } });
    const panel = h("aside", { class: "ed-panel", "aria-label": "Edit details" },
      this.error,
      this.hint,
      this.cropFields,
      h("h3", { class: "ed-panel-title" }, "Annotations ", h("span", { class: "ed-count" })),
      this.list, this.listEmpty, this.note);

    const root = h("div", { class: "editor", dataset: { testid: "image-editor" } },
      toolbar, h("div", { class: "ed-body" }, this.stage, panel));
    this.frame.addEventListener("pointerdown", (event) => this.pointerDown(event));
    this.frame.addEventListener("pointermove", (event) => this.pointerMove(event));
    this.frame.addEventListener("pointerup", (event) => this.pointerUp(event));
    this.frame.addEventListener("pointercancel", () => { this.gesture = null; this.draft = null; this.render(); });
    this.frame.addEventListener("keydown", (event) => this.frameKey(event));
    root.addEventListener("keydown", (event) => this.shortcut(event));
    return root;
  }

  // -- state changes -------------------------------------------------------------------------------------

  setTool(id) {
    this.tool = id;
    for (const [toolId, button] of this.toolButtons) button.setAttribute("aria-pressed", String(toolId === id));
    const tool = TOOLS.find((t) => t.id === id);
    this.hint.textContent = `${tool.hint} ${id === "crop" ? "" : "With the picture focused, Enter adds one in the middle."}`.trim();
    this.frame.setAttribute("aria-label", `Photo being edited. ${tool.label} tool.`);
    this.frame.dataset.tool = id;
    if (id !== "select") this.selected = id === "crop" ? null : this.selected;
    this.cropFields.hidden = id !== "crop";
    this.closeTextEntry(false);
    this.render();
  }

  /** Record the working copy before a change, for Undo. */
  remember() {
    this.undoStack.push(JSON.stringify(this.model));
    if (this.undoStack.length > UNDO_LIMIT) this.undoStack.shift();
    this.error.hidden = true;
  }

  undo() {
    const previous = this.undoStack.pop();
    if (!previous) return;
    this.model = JSON.parse(previous);
    if (this.selected && !this.model.annotations.some((a) => a.id === this.selected)) this.selected = null;
    this.render();
  }

  rotate(degrees) {
    this.remember();
    this.model.rotation = normaliseRotation(this.model.rotation + degrees);
    this.render();
    this.say(`Rotated to ${this.model.rotation}°.`);
  }

  clearAll() {
    if (!this.model.rotation && !this.model.crop && !this.model.annotations.length) return;
    this.remember();
    this.model = { rotation: 0, crop: null, annotations: [] };
    this.selected = null;
    this.render();
    this.say("All edits removed. Save to restore the original photo, or Undo.");
  }

  /** The crop in the rotated frame (what the crop tool shows), or the whole picture. */
  get rotatedCrop() {
    return this.model.crop ? rotateRect(this.model.crop, this.model.rotation) : { x: 0, y: 0, width: 1, height: 1 };
  }

  setRotatedCrop(rect) {
    const clean = clampCrop(rect);
    this.model.crop = isFullCrop(clean) ? null : unrotateRect(clean, this.model.rotation);
  }

  resetCrop() {
    if (!this.model.crop) return;
    this.remember();
    this.model.crop = null;
    this.render();
  }

  cropFromInputs() {
    const value = (key) => clamp((Number(this.cropInputs[key].value) || 0) / 100, 0, 1);
    const rect = { x: value("x"), y: value("y"), width: value("width") || 1, height: value("height") || 1 };
    this.remember();
    this.setRotatedCrop(rect);
    this.render();
  }

  addAnnotation(item) {
    if (this.model.annotations.length >= MAX_ANNOTATIONS) {
      this.say(`A photo can carry at most ${MAX_ANNOTATIONS} annotations.`);
      return;
    }
    this.remember();
    const annotation = { id: newId(), color: DEFAULT_COLOR, ...item };
    this.model.annotations.push(annotation);
    this.selected = annotation.id;
    this.render();
    this.say(`${NAMES[annotation.type]} added.`);
  }

  deleteAnnotation(id) {
    const index = this.model.annotations.findIndex((a) => a.id === id);
    if (index < 0) return;
    this.remember();
    const [removed] = this.model.annotations.splice(index, 1);
    if (this.selected === id) this.selected = null;
    this.render();
    this.say(`${NAMES[removed.type]} deleted.`);
  }

  moveAnnotation(id, dx, dy) {
    const item = this.model.annotations.find((a) => a.id === id);
    if (!item) return;
    // dx, dy are in the shown frame; map the move into the original frame.
    const { rotation } = this.model;
    const crop = this.viewCrop();
    const p1 = toView({ x: item.x1, y: item.y1 }, rotation, crop);
    const p2 = toView({ x: item.x2, y: item.y2 }, rotation, crop);
    const a = fromView({ x: p1.x + dx, y: p1.y + dy }, rotation, crop);
    const b = fromView({ x: p2.x + dx, y: p2.y + dy }, rotation, crop);
    Object.assign(item, { x1: clamp(a.x, 0, 1), y1: clamp(a.y, 0, 1), x2: clamp(b.x, 0, 1), y2: clamp(b.y, 0, 1) });
  }

  // -- text labels ---------------------------------------------------------------------------------------

  openTextEntry(point) {
    if (this.model.annotations.length >= MAX_ANNOTATIONS) {
      this.say(`A photo can carry at most ${MAX_ANNOTATIONS} annotations.`);
      return;
    }
    this.pendingText = point;
    const rect = this.canvas.getBoundingClientRect();
    const stageRect = this.stage.getBoundingClientRect();
    const left = rect.left - stageRect.left + point.x * rect.width;
    const top = rect.top - stageRect.top + point.y * rect.height;
    this.textEntry.hidden = false;
    const width = this.textEntry.offsetWidth;
    const height = this.textEntry.offsetHeight;
    this.textEntry.style.left = `${clamp(left, 8, stageRect.width - width - 8)}px`;
    this.textEntry.style.top = `${clamp(top + 12, 8, stageRect.height - height - 8)}px`;
    this.textInput.value = "";
    this.textInput.focus();
  }

  commitText() {
    const words = this.textInput.value.trim();
    if (!words) {
      this.textInput.focus();
      this.say("Type the label's words, or press Escape.");
      return;
    }
    const p = fromView(this.pendingText, this.model.rotation, this.viewCrop());
    this.closeTextEntry(false);
    this.addAnnotation({ type: "text", x1: p.x, y1: p.y, x2: p.x, y2: p.y, text: words.slice(0, MAX_TEXT_LENGTH) });
    this.frame.focus();
  }

  closeTextEntry(refocus = true) {
    if (this.textEntry.hidden) return;
    this.textEntry.hidden = true;
    this.pendingText = null;
    if (refocus) this.frame.focus();
  }

  // -- drawing -------------------------------------------------------------------------------------------

  /** The crop applied to what is shown: none while cropping (the whole photo is shown), else the crop. */
  viewCrop() {
    return this.tool === "crop" || !this.model.crop ? null : rotateRect(this.model.crop, this.model.rotation);
  }

  /** The annotations as they will be saved (cut to the crop), in the shown frame, with their ids. */
  shownAnnotations() {
    const crop = this.viewCrop();
    const out = [];
    for (const item of this.model.annotations) {
      const shown = annotationToFinal(item, this.model.rotation, crop);
      if (shown) out.push(shown);
    }
    if (this.draft) out.push(annotationToFinal(this.draft, this.model.rotation, crop));
    return out.filter(Boolean);
  }

  render() {
    const { rotation } = this.model;
    const crop = this.viewCrop();
    const key = `${rotation}|${crop ? [crop.x, crop.y, crop.width, crop.height].join(",") : "-"}`;
    if (this.base.key !== key) {
      this.base.size = drawPhoto(this.base.canvas, this.img, rotation, crop);
      this.base.key = key;
    }
    const size = this.base.size;
    const natural = { width: this.img.naturalWidth, height: this.img.naturalHeight };
    const rotatedCrop = this.model.crop ? rotateRect(this.model.crop, rotation) : null;
    const styleSize = finalSize(natural, rotation, rotatedCrop);
    if (this.canvas.width !== size.width) this.canvas.width = size.width;
    if (this.canvas.height !== size.height) this.canvas.height = size.height;
    const ctx = this.canvas.getContext("2d");
    ctx.drawImage(this.base.canvas, 0, 0);
    const style = annotationStyle(styleSize);
    this.boxes = new Map();
    for (const item of this.shownAnnotations()) {
      const box = drawAnnotation(ctx, item, size, style);
      if (item.id) this.boxes.set(item.id, { box, item });
    }

    // Fit the picture in the stage.
    const stageRect = this.stage.getBoundingClientRect();
    const scale = fitScale(size, { width: stageRect.width - 32, height: stageRect.height - 32 }, 4);
    this.layout = { scale, size, style };
    this.frame.style.width = `${Math.max(1, Math.floor(size.width * scale))}px`;
    this.frame.style.height = `${Math.max(1, Math.floor(size.height * scale))}px`;

    const selected = this.selected && this.boxes.get(this.selected);
    if (selected) {
      const { box } = selected;
      const pad = 4 / scale;
      ctx.save();
      ctx.lineWidth = 2 / scale;
      ctx.setLineDash([6 / scale, 4 / scale]);
      ctx.strokeStyle = "#ffffff";
      ctx.strokeRect(box.left - pad, box.top - pad, box.right - box.left + 2 * pad, box.bottom - box.top + 2 * pad);
      ctx.lineDashOffset = 5 / scale;
      ctx.strokeStyle = "#0b5e72";
      ctx.strokeRect(box.left - pad, box.top - pad, box.right - box.left + 2 * pad, box.bottom - box.top + 2 * pad);
      ctx.restore();
    }
    this.renderCrop();
    this.renderPanel();
  }

  renderCrop() {
    const cropping = this.tool === "crop";
    this.cropBox.hidden = !cropping;
    if (!cropping) return;
    const rect = this.rotatedCrop;
    Object.assign(this.cropBox.style, {
      left: `${rect.x * 100}%`, top: `${rect.y * 100}%`, width: `${rect.width * 100}%`, height: `${rect.height * 100}%`,
    });
    for (const key of ["x", "y", "width", "height"]) {
      if (document.activeElement !== this.cropInputs[key]) this.cropInputs[key].value = String(Math.round(rect[key] * 1000) / 10);
    }
  }

  renderPanel() {
    const { annotations } = this.model;
    const count = this.element.querySelector(".ed-count");
    count.textContent = annotations.length ? `(${annotations.length})` : "";
    const dropped = toServerEdits(this.model).dropped;
    this.list.replaceChildren(...annotations.map((item, index) => {
      const name = `${index + 1}. ${NAMES[item.type]}${item.type === "text" ? `: “${item.text}”` : ""}`;
      const choose = h("button", {
        type: "button", class: "ed-item", "aria-pressed": String(this.selected === item.id),
        onclick: () => { this.selected = item.id; if (this.tool !== "select") this.setTool("select"); else this.render(); },
      }, icon(`annot-${item.type}`), h("span", {}, name));
      const remove = h("button", {
        type: "button", class: "ed-item-delete", "aria-label": `Delete annotation ${index + 1}`, title: "Delete",
        onclick: () => this.deleteAnnotation(item.id),
      }, icon("trash"));
      return h("li", { dataset: { annotationId: item.id, type: item.type } }, choose, remove);
    }));
    this.list.hidden = annotations.length === 0;
    this.listEmpty.hidden = annotations.length > 0;
    this.note.textContent = dropped
      ? `${dropped} ${dropped === 1 ? "annotation lies" : "annotations lie"} outside the crop and will not be saved.`
      : "";
    this.undoButton.disabled = this.undoStack.length === 0;
    this.clearButton.disabled = !this.model.rotation && !this.model.crop && !annotations.length;
    this.element.dataset.dirty = String(this.dirty);
  }

  say(message) {
    this.note.textContent = message;
  }

  // -- pointer -------------------------------------------------------------------------------------------

  pointAt(event, clampToUnit = true) {
    return screenToFraction(event.clientX, event.clientY, this.canvas.getBoundingClientRect(), clampToUnit);
  }

  pointerDown(event) {
    if (event.button !== 0 || this.saving) return;
    this.frame.focus({ preventScroll: true });
    this.closeTextEntry(false);
    const p = this.pointAt(event);
    const gesture = { start: p, last: p, clientX: event.clientX, clientY: event.clientY, moved: false };
    if (this.tool === "crop") {
      const edge = event.target.dataset?.edge || (event.target === this.cropBox ? "move" : null);
      gesture.kind = "crop";
      gesture.edge = edge || "new";
      gesture.startRect = this.rotatedCrop;
      this.remember();
    } else if (this.tool === "select") {
      const hit = this.hitTest(p);
      this.selected = hit;
      gesture.kind = hit ? "move" : "none";
      if (hit) this.remember();
      this.render();
    } else if (this.tool === "text") {
      gesture.kind = "text";
    } else {
      gesture.kind = "draw";
    }
    this.gesture = gesture;
    this.frame.setPointerCapture(event.pointerId);
    event.preventDefault();
  }

  pointerMove(event) {
    const g = this.gesture;
    if (!g) return;
    const p = this.pointAt(event);
    if (Math.hypot(event.clientX - g.clientX, event.clientY - g.clientY) >= CLICK_PX) g.moved = true;
    if (g.kind === "crop" && g.moved) {
      const rect = g.edge === "new"
        ? rectFromPoints(g.start, p)
        : dragCrop(g.startRect, g.edge, p.x - g.start.x, p.y - g.start.y);
      if (rect.width >= MIN_CROP && rect.height >= MIN_CROP) this.setRotatedCrop(rect);
      this.render();
    } else if (g.kind === "move" && g.moved) {
      this.moveAnnotation(this.selected, p.x - g.last.x, p.y - g.last.y);
      this.render();
    } else if (g.kind === "draw" && g.moved) {
      const a = fromView(g.start, this.model.rotation, this.viewCrop());
      const b = fromView(p, this.model.rotation, this.viewCrop());
      this.draft = { type: this.tool, x1: a.x, y1: a.y, x2: b.x, y2: b.y, color: DEFAULT_COLOR };
      this.render();
    }
    g.last = p;
  }

  pointerUp(event) {
    const g = this.gesture;
    if (!g) return;
    this.gesture = null;
    const p = this.pointAt(event);
    if (g.kind === "draw") {
      this.draft = null;
      if (g.moved) this.addShape(this.tool, g.start, p);
      else this.addShapeAt(this.tool, p);
    } else if (g.kind === "text") {
      this.openTextEntry(g.start);
    } else if (g.kind === "crop" || g.kind === "move") {
      if (!g.moved) this.undoStack.pop(); // nothing changed: forget the snapshot taken on press
      this.render();
    }
  }

  /** A drawn shape from `a` to `b` (shown-frame fractions). */
  addShape(type, a, b) {
    const crop = this.viewCrop();
    const p = fromView(a, this.model.rotation, crop);
    const q = fromView(b, this.model.rotation, crop);
    this.addAnnotation({ type, x1: p.x, y1: p.y, x2: q.x, y2: q.y });
  }

  /** A click (or Enter) places a default-size shape: an arrow pointing at `at`, a circle around it. */
  addShapeAt(type, at) {
    if (type === "text") {
      this.openTextEntry(at);
      return;
    }
    const { size } = this.layout;
    const aspect = size.width / size.height;
    const r = 0.08;
    const ry = r * Math.min(1, aspect);
    const rx = ry / aspect;
    if (type === "circle") {
      this.addShape("circle", { x: clamp(at.x - rx, 0, 1), y: clamp(at.y - ry, 0, 1) }, { x: clamp(at.x + rx, 0, 1), y: clamp(at.y + ry, 0, 1) });
    } else {
      // Point from the upper left, or from the other side when the spot is near the left/top edge.
      const tail = { x: at.x - 2 * rx * (at.x > 2 * rx ? 1 : -1), y: at.y - 2 * ry * (at.y > 2 * ry ? 1 : -1) };
      this.addShape("arrow", tail, at);
    }
  }

  /** The id of the topmost annotation under `p` (shown-frame fractions), or null. */
  hitTest(p) {
    const { size, scale } = this.layout;
    const px = { x: p.x * (size.width - 1), y: p.y * (size.height - 1) };
    const slack = HIT_PX / scale;
    const entries = [...this.boxes.values()].reverse();
    for (const { box, item } of entries) {
      if (px.x < box.left - slack || px.x > box.right + slack || px.y < box.top - slack || px.y > box.bottom + slack) continue;
      if (item.type === "arrow") {
        const a = { x: item.x1 * (size.width - 1), y: item.y1 * (size.height - 1) };
        const b = { x: item.x2 * (size.width - 1), y: item.y2 * (size.height - 1) };
        if (distanceToSegment(px, a, b) <= slack + this.layout.style.stroke * 2) return item.id;
        continue;
      }
      return item.id; // circles and labels: anywhere in their box
    }
    return null;
  }

  // -- keyboard ------------------------------------------------------------------------------------------

  frameKey(event) {
    const step = event.shiftKey ? KEY_STEP_BIG : KEY_STEP;
    const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    const arrow = arrows[event.key];
    if (event.key === "Enter" || event.key === " ") {
      if (this.tool === "crop" || this.tool === "select") return;
      event.preventDefault();
      this.addShapeAt(this.tool, { x: 0.5, y: 0.5 });
    } else if (arrow && this.tool === "crop") {
      // Arrow keys move the crop box; with Shift they move its bottom-right corner (resize).
      event.preventDefault();
      this.remember();
      const [dx, dy] = arrow.map((v) => v * KEY_STEP);
      this.setRotatedCrop(dragCrop(this.rotatedCrop, event.shiftKey ? "se" : "move", dx, dy));
      this.render();
    } else if (arrow && this.selected) {
      event.preventDefault();
      this.remember();
      this.moveAnnotation(this.selected, arrow[0] * step, arrow[1] * step);
      this.render();
    } else if ((event.key === "Delete" || event.key === "Backspace") && this.selected) {
      event.preventDefault();
      this.deleteAnnotation(this.selected);
    }
  }

  shortcut(event) {
    if (event.target.closest("input, textarea, select, .ed-text-entry")) return;
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      event.preventDefault();
      this.undo();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tool = TOOLS.find((t) => t.key === event.key.toLowerCase());
    if (tool) {
      event.preventDefault();
      this.setTool(tool.id);
    } else if (event.key === "[") {
      this.rotate(-90);
    } else if (event.key === "]") {
      this.rotate(90);
    }
  }

  // -- saving --------------------------------------------------------------------------------------------

  /** The PATCH body's `edits`; text labels carry x2/y2 = the bottom-right of the box they are drawn in. */
  serverEdits() {
    const { edits } = toServerEdits(this.model);
    if (!edits.annotations) return edits;
    const natural = { width: this.img.naturalWidth, height: this.img.naturalHeight };
    const size = finalSize(natural, edits.rotation, edits.crop);
    const ctx = this.canvas.getContext("2d");
    for (const item of edits.annotations) {
      if (item.type !== "text") continue;
      const { box } = textLayout(ctx, item, size);
      item.x2 = clamp(Math.round((box.right / (size.width - 1)) * 1e6) / 1e6, 0, 1);
      item.y2 = clamp(Math.round((box.bottom / (size.height - 1)) * 1e6) / 1e6, 0, 1);
    }
    return edits;
  }

  async save() {
    if (this.saving) return;
    this.saving = true;
    this.error.hidden = true;
    this.saveButton.disabled = true;
    this.saveButton.lastChild.textContent = "Saving…";
    try {
      const updated = await api.updateImage(this.sessionId, this.image.id, { edits: this.serverEdits() });
      this.onSaved?.(updated);
      this.onClose?.("saved");
    } catch (err) {
      this.error.textContent = err instanceof ApiError
        ? `Not saved. ${err.detail}`
        : "Not saved: the edits could not be sent. Check the connection and try again.";
      this.error.hidden = false;
    } finally {
      this.saving = false;
      this.saveButton.disabled = false;
      this.saveButton.lastChild.textContent = "Save edits";
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

function distanceToSegment(p, a, b) {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const length = dx * dx + dy * dy;
  const t = length ? clamp(((p.x - a.x) * dx + (p.y - a.y) * dy) / length, 0, 1) : 0;
  return Math.hypot(p.x - (a.x + t * dx), p.y - (a.y + t * dy));
}

// The edit model of the image editor, with no DOM and no canvas: the working copy of a photo's edits, the
// operations a clinician makes on it (rotate, crop, add/move/delete an annotation, clear, undo), hit testing,
// and the `edits` body sent to the server. Node runs its tests (tests/js/edit-model.test.mjs).
//
// The working copy is `{rotation, crop, annotations}` with crop and annotations in fractions of the ORIGINAL
// photo (edit-geometry.js), so a rotation or a new crop keeps every mark on the thing it points at. Points
// that come from the screen are in the SHOWN frame: the rotated photo, cut to `viewCrop` (null while the
// crop tool shows the whole photo).

import {
  DEFAULT_COLOR, MAX_ANNOTATIONS, MAX_TEXT_LENGTH, annotationToFinal, clamp, clampCrop, dragCrop, finalSize,
  fromServerEdits, fromView, isFullCrop, normaliseRotation, rotateRect, toServerEdits, toView, unrotateRect,
} from "./edit-geometry.js";

/** How many changes Undo remembers. */
export const UNDO_LIMIT = 100;
/** A click or Enter places a shape this big: its half-size as a fraction of the shorter side. */
const DEFAULT_RADIUS = 0.08;

let nextId = 1;
const newId = () => `m${Date.now().toString(36)}${(nextId++).toString(36)}`;

export class EditModel {
  /**
   * @param {object|null|undefined} edits the image's stored `edits` (server form, as image.edits), the
   *   starting point and what `dirty` compares with.
   * @param {{onRemember?(): void}} [hooks] `onRemember` runs before each change that Undo can take back
   *   (the editor hides a stale save error there).
   */
  constructor(edits, { onRemember } = {}) {
    this.state = fromServerEdits(edits);
    this.initial = JSON.stringify(toServerEdits(this.state).edits);
    this.undoStack = [];
    this.onRemember = onRemember;
  }

  get rotation() {
    return this.state.rotation;
  }

  /** The crop in the ORIGINAL frame, or null for the whole photo. */
  get crop() {
    return this.state.crop;
  }

  get annotations() {
    return this.state.annotations;
  }

  /** Whether what would be saved differs from the stored edits. */
  get dirty() {
    return JSON.stringify(toServerEdits(this.state).edits) !== this.initial;
  }

  /** Whether there is anything at all to clear: a rotation, a crop or an annotation. */
  get isEmpty() {
    return !this.state.rotation && !this.state.crop && !this.state.annotations.length;
  }

  /** Whether another annotation would exceed processing.MAX_ANNOTATIONS. */
  get full() {
    return this.state.annotations.length >= MAX_ANNOTATIONS;
  }

  get canUndo() {
    return this.undoStack.length > 0;
  }

  find(id) {
    return this.state.annotations.find((a) => a.id === id) || null;
  }

  // -- history -------------------------------------------------------------------------------------------

  /** Record the working copy before a change, for Undo (at most UNDO_LIMIT are kept). */
  remember() {
    this.undoStack.push(JSON.stringify(this.state));
    if (this.undoStack.length > UNDO_LIMIT) this.undoStack.shift();
    this.onRemember?.();
  }

  /** Drop the last snapshot: a gesture that began with remember() changed nothing after all. */
  forget() {
    this.undoStack.pop();
  }

  /** Go back to the state before the last change. Returns false when there is nothing to undo. */
  undo() {
    const previous = this.undoStack.pop();
    if (!previous) return false;
    this.state = JSON.parse(previous);
    return true;
  }

  // -- rotation and crop ---------------------------------------------------------------------------------

  /** Turn the photo by `degrees` (a multiple of 90, clockwise); returns the new rotation 0/90/180/270. */
  rotate(degrees) {
    this.remember();
    this.state.rotation = normaliseRotation(this.state.rotation + degrees);
    return this.state.rotation;
  }

  /** Remove every edit (the original photo). Returns false when there was nothing to remove. */
  clear() {
    if (this.isEmpty) return false;
    this.remember();
    this.state = { rotation: 0, crop: null, annotations: [] };
    return true;
  }

  /** The crop in the rotated frame (what the crop tool shows), or the whole picture. */
  get rotatedCrop() {
    return this.state.crop ? rotateRect(this.state.crop, this.state.rotation) : { x: 0, y: 0, width: 1, height: 1 };
  }

  /**
   * Set the crop from a rotated-frame rectangle, clamped inside the photo and at least MIN_CROP a side;
   * a crop of the whole photo is no crop. Not recorded for Undo: a gesture calls remember() once first.
   */
  setRotatedCrop(rect) {
    const clean = clampCrop(rect);
    this.state.crop = isFullCrop(clean) ? null : unrotateRect(clean, this.state.rotation);
  }

  /** setRotatedCrop as one undoable change (the crop fields). */
  cropTo(rect) {
    this.remember();
    this.setRotatedCrop(rect);
  }

  /** Move the crop box by (dx, dy) rotated-frame fractions, or with `resize` its bottom-right corner. */
  nudgeCrop(dx, dy, resize = false) {
    this.remember();
    this.setRotatedCrop(dragCrop(this.rotatedCrop, resize ? "se" : "move", dx, dy));
  }

  /** Back to the whole photo. Returns false when there was no crop. */
  resetCrop() {
    if (!this.state.crop) return false;
    this.remember();
    this.state.crop = null;
    return true;
  }

  /** The crop applied to what is shown: none while `cropping` (the whole photo is shown), else the crop. */
  viewCrop(cropping) {
    return cropping || !this.state.crop ? null : rotateRect(this.state.crop, this.state.rotation);
  }

  // -- annotations ---------------------------------------------------------------------------------------

  /**
   * Add an annotation given in the ORIGINAL frame (`{type, x1, y1, x2, y2, text?}`); it gets an id and the
   * default colour. Returns it, or null when the photo already carries MAX_ANNOTATIONS.
   */
  add(item) {
    if (this.full) return null;
    this.remember();
    const annotation = { id: newId(), color: DEFAULT_COLOR, ...item };
    this.state.annotations.push(annotation);
    return annotation;
  }

  /** An arrow (tail `a`, head `b`) or a circle (in the box `a`, `b` span) drawn in the shown frame. */
  addDrawn(type, a, b, viewCrop) {
    const p = fromView(a, this.state.rotation, viewCrop);
    const q = fromView(b, this.state.rotation, viewCrop);
    return this.add({ type, x1: p.x, y1: p.y, x2: q.x, y2: q.y });
  }

  /** A text label whose top-left is at `at` (shown frame); `words` are trimmed and cut to MAX_TEXT_LENGTH. */
  addText(at, words, viewCrop) {
    const p = fromView(at, this.state.rotation, viewCrop);
    const text = words.trim().slice(0, MAX_TEXT_LENGTH);
    return this.add({ type: "text", x1: p.x, y1: p.y, x2: p.x, y2: p.y, text });
  }

  /** Delete annotation `id`; returns the removed annotation, or null when there is none. */
  remove(id) {
    const index = this.state.annotations.findIndex((a) => a.id === id);
    if (index < 0) return null;
    this.remember();
    const [removed] = this.state.annotations.splice(index, 1);
    return removed;
  }

  /**
   * Move annotation `id` by (dx, dy) fractions of the SHOWN frame, each point kept inside the photo. Not
   * recorded for Undo (a drag calls remember() once when it starts); see nudge.
   */
  move(id, dx, dy, viewCrop) {
    const item = this.find(id);
    if (!item) return;
    const { rotation } = this.state;
    const p1 = toView({ x: item.x1, y: item.y1 }, rotation, viewCrop);
    const p2 = toView({ x: item.x2, y: item.y2 }, rotation, viewCrop);
    const a = fromView({ x: p1.x + dx, y: p1.y + dy }, rotation, viewCrop);
    const b = fromView({ x: p2.x + dx, y: p2.y + dy }, rotation, viewCrop);
    Object.assign(item, { x1: clamp(a.x, 0, 1), y1: clamp(a.y, 0, 1), x2: clamp(b.x, 0, 1), y2: clamp(b.y, 0, 1) });
  }

  /** move() as one undoable change (the arrow keys). */
  nudge(id, dx, dy, viewCrop) {
    if (!this.find(id)) return;
    this.remember();
    this.move(id, dx, dy, viewCrop);
  }

  /**
   * The annotations as they will be saved (cut to `viewCrop`), in the shown frame, with their ids; `draft`
   * (a shape being drawn, original frame) last.
   */
  shown(viewCrop, draft = null) {
    const items = draft ? [...this.state.annotations, draft] : this.state.annotations;
    return items.map((item) => annotationToFinal(item, this.state.rotation, viewCrop)).filter(Boolean);
  }

  // -- the server's form ---------------------------------------------------------------------------------

  /** How many annotations lie outside the crop and would not be saved. */
  get dropped() {
    return toServerEdits(this.state).dropped;
  }

  /**
   * The PATCH body's `edits` (schema: processing.validate_edits): `{}` for no edits, else `{rotation, crop,
   * annotations}` in the server's frames. Text labels carry x2/y2 = the bottom-right of the box they are
   * drawn in, which only a canvas can measure: `textBox(item, size)` returns that box in px `{right, bottom}`
   * for a label (server form) on a final picture of `size` px; `natural` is the stored photo's size in px.
   */
  serverEdits(natural, textBox) {
    const { edits } = toServerEdits(this.state);
    if (!edits.annotations) return edits;
    const size = finalSize(natural, edits.rotation, edits.crop);
    for (const item of edits.annotations) {
      if (item.type !== "text") continue;
      const box = textBox(item, size);
      item.x2 = clamp(Math.round((box.right / (size.width - 1)) * 1e6) / 1e6, 0, 1);
      item.y2 = clamp(Math.round((box.bottom / (size.height - 1)) * 1e6) / 1e6, 0, 1);
    }
    return edits;
  }
}

/**
 * The two shown-frame points of a shape placed by a click (or Enter) at `at` on a shown picture of `size`
 * px: a circle of DEFAULT_RADIUS around it, or an arrow pointing at it from the upper left (from the other
 * side when the spot is near the left or top edge). Same length on screen in both directions.
 */
export function defaultShape(type, at, size) {
  const aspect = size.width / size.height;
  const ry = DEFAULT_RADIUS * Math.min(1, aspect);
  const rx = ry / aspect;
  if (type === "circle") {
    return [
      { x: clamp(at.x - rx, 0, 1), y: clamp(at.y - ry, 0, 1) },
      { x: clamp(at.x + rx, 0, 1), y: clamp(at.y + ry, 0, 1) },
    ];
  }
  const tail = { x: at.x - 2 * rx * (at.x > 2 * rx ? 1 : -1), y: at.y - 2 * ry * (at.y > 2 * ry ? 1 : -1) };
  return [tail, at];
}

/**
 * The id of the topmost annotation under `p` (shown-frame fractions), or null. `boxes` are the drawn
 * annotations in drawing order, `[{box: {left, top, right, bottom} px, item}]` (edit-render.drawAnnotation);
 * `layout` is `{size, scale, stroke}`: the picture's px size, its on-screen scale and the line width. A
 * press within `slackPx` screen px counts; an arrow is hit near its line, a circle or label anywhere in its box.
 */
export function hitTest(p, boxes, layout, slackPx = 8) {
  const { size, scale, stroke } = layout;
  const px = { x: p.x * (size.width - 1), y: p.y * (size.height - 1) };
  const slack = slackPx / scale;
  for (const { box, item } of [...boxes].reverse()) {
    if (px.x < box.left - slack || px.x > box.right + slack || px.y < box.top - slack || px.y > box.bottom + slack) continue;
    if (item.type !== "arrow") return item.id;
    const a = { x: item.x1 * (size.width - 1), y: item.y1 * (size.height - 1) };
    const b = { x: item.x2 * (size.width - 1), y: item.y2 * (size.height - 1) };
    if (distanceToSegment(px, a, b) <= slack + stroke * 2) return item.id;
  }
  return null;
}

/** Distance from point `p` to the segment a–b, in the points' own units. */
export function distanceToSegment(p, a, b) {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const length = dx * dx + dy * dy;
  const t = length ? clamp(((p.x - a.x) * dx + (p.y - a.y) * dy) / length, 0, 1) : 0;
  return Math.hypot(p.x - (a.x + t * dx), p.y - (a.y + t * dy));
}

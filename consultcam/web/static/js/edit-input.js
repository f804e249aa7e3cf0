// Pointer and keyboard interaction of the image editor: a press, drag and release on the picture draws a
// shape, moves a mark, places a label or drags the crop; arrow keys move the selection or the crop; single
// keys choose a tool or rotate; Ctrl/Cmd+Z undoes. The editor (image-editor.js) owns the state; this module
// turns events into calls on it and on its EditModel.

import { DEFAULT_COLOR, MIN_CROP, dragCrop, fromView, rectFromPoints, screenToFraction } from "./edit-geometry.js";
import { hitTest } from "./edit-model.js";
import { TOOLS } from "./edit-toolbar.js";

const KEY_STEP = 0.01; // an arrow key moves a mark or the crop 1 % of the picture
const KEY_STEP_BIG = 0.05; // with Shift, a mark moves 5 %
const CLICK_PX = 5; // a press that moves less than this is a click, not a drag
const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };

export class EditInput {
  /**
   * @param {import("./image-editor.js").ImageEditor} editor read: `tool`, `model`, `selected`, `saving`,
   *   `surface` (EditCanvas), `canvas`, `cropBox`; called: render, select, setTool, rotate, undo,
   *   placeShape, openTextEntry, closeTextEntry, deleteAnnotation.
   */
  constructor(editor) {
    this.editor = editor;
    /** The press being dragged: `{kind, start, last, clientX, clientY, moved, edge?, startRect?}`. */
    this.gesture = null;
    /** The shape being drawn (original frame), shown until the release adds it. */
    this.draft = null;
  }

  /** Listen on `frame` (the picture) and `root` (the whole editor, for the shortcuts). */
  attach(frame, root) {
    frame.addEventListener("pointerdown", (event) => this.pointerDown(event));
    frame.addEventListener("pointermove", (event) => this.pointerMove(event));
    frame.addEventListener("pointerup", (event) => this.pointerUp(event));
    frame.addEventListener("pointercancel", () => this.abort());
    frame.addEventListener("keydown", (event) => this.frameKey(event));
    root.addEventListener("keydown", (event) => this.shortcut(event));
  }

  /** Drop the gesture under way (Escape, a cancelled pointer). Returns false when there was none. */
  abort() {
    if (!this.gesture) return false;
    this.gesture = null;
    this.draft = null;
    this.editor.render();
    return true;
  }

  pointAt(event) {
    return screenToFraction(event.clientX, event.clientY, this.editor.canvas.getBoundingClientRect(), true);
  }

  pointerDown(event) {
    const ed = this.editor;
    if (event.button !== 0 || ed.saving) return;
    event.currentTarget.focus({ preventScroll: true });
    ed.closeTextEntry(false);
    const p = this.pointAt(event);
    const gesture = { start: p, last: p, clientX: event.clientX, clientY: event.clientY, moved: false };
    if (ed.tool === "crop") {
      const edge = event.target.dataset?.edge || (event.target === ed.cropBox ? "move" : null);
      Object.assign(gesture, { kind: "crop", edge: edge || "new", startRect: ed.model.rotatedCrop });
      ed.model.remember();
    } else if (ed.tool === "select") {
      const { layout, boxes } = ed.surface;
      const hit = hitTest(p, boxes.values(), { size: layout.size, scale: layout.scale, stroke: layout.style.stroke });
      gesture.kind = hit ? "move" : "none";
      if (hit) ed.model.remember();
      ed.select(hit);
    } else {
      gesture.kind = ed.tool === "text" ? "text" : "draw";
    }
    this.gesture = gesture;
    event.currentTarget.setPointerCapture(event.pointerId);
    event.preventDefault();
  }

  pointerMove(event) {
    const g = this.gesture;
    if (!g) return;
    const ed = this.editor;
    const p = this.pointAt(event);
    if (Math.hypot(event.clientX - g.clientX, event.clientY - g.clientY) >= CLICK_PX) g.moved = true;
    if (g.kind === "crop" && g.moved) {
      const rect = g.edge === "new"
        ? rectFromPoints(g.start, p)
        : dragCrop(g.startRect, g.edge, p.x - g.start.x, p.y - g.start.y);
      if (rect.width >= MIN_CROP && rect.height >= MIN_CROP) ed.model.setRotatedCrop(rect);
      ed.render();
    } else if (g.kind === "move" && g.moved) {
      ed.model.move(ed.selected, p.x - g.last.x, p.y - g.last.y, ed.viewCrop);
      ed.render();
    } else if (g.kind === "draw" && g.moved) {
      const a = fromView(g.start, ed.model.rotation, ed.viewCrop);
      const b = fromView(p, ed.model.rotation, ed.viewCrop);
      this.draft = { type: ed.tool, x1: a.x, y1: a.y, x2: b.x, y2: b.y, color: DEFAULT_COLOR };
      ed.render();
    }
    g.last = p;
  }

  pointerUp(event) {
    const g = this.gesture;
    if (!g) return;
    const ed = this.editor;
    this.gesture = null;
    const p = this.pointAt(event);
    if (g.kind === "draw") {
      this.draft = null;
      ed.placeShape(ed.tool, g.moved ? g.start : null, p);
    } else if (g.kind === "text") {
      ed.openTextEntry(g.start);
    } else if (g.kind === "crop" || g.kind === "move") {
      if (!g.moved) ed.model.forget(); // nothing changed: forget the snapshot taken on press
      ed.render();
    }
  }

  /** Keys on the focused picture: Enter/Space place a shape in the middle; arrows move; Delete removes. */
  frameKey(event) {
    const ed = this.editor;
    const arrow = ARROWS[event.key];
    if (event.key === "Enter" || event.key === " ") {
      if (ed.tool === "crop" || ed.tool === "select") return;
      event.preventDefault();
      ed.placeShape(ed.tool, null, { x: 0.5, y: 0.5 });
    } else if (arrow && ed.tool === "crop") {
      // Arrow keys move the crop box; with Shift they move its bottom-right corner (resize).
      event.preventDefault();
      ed.model.nudgeCrop(arrow[0] * KEY_STEP, arrow[1] * KEY_STEP, event.shiftKey);
      ed.render();
    } else if (arrow && ed.selected) {
      event.preventDefault();
      const step = event.shiftKey ? KEY_STEP_BIG : KEY_STEP;
      ed.model.nudge(ed.selected, arrow[0] * step, arrow[1] * step, ed.viewCrop);
      ed.render();
    } else if ((event.key === "Delete" || event.key === "Backspace") && ed.selected) {
      event.preventDefault();
      ed.deleteAnnotation(ed.selected);
    }
  }

  /** Editor-wide keys, ignored while typing: tool letters, [ and ] rotate, Ctrl/Cmd+Z undoes. */
  shortcut(event) {
    const ed = this.editor;
    if (event.target.closest("input, textarea, select, .ed-text-entry")) return;
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      event.preventDefault();
      ed.undo();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tool = TOOLS.find((t) => t.key === event.key.toLowerCase());
    if (tool) {
      event.preventDefault();
      ed.setTool(tool.id);
    } else if (event.key === "[") {
      ed.rotate(-90);
    } else if (event.key === "]") {
      ed.rotate(90);
    }
  }
}

// The image viewer's zoom and pan on the page: the wheel, double click, drag and two-finger pinch on the
// stage, the zoom buttons' state, and the canvas's size and position. The maths is pan-zoom.js.

import {
  ZOOM_STEP, doubleClickFactor, fittedView, isZoomed, keyPanStep, panBy, pinchOf, refit, viewLimits, wheelFactor,
  zoomAt, zoomText,
} from "./pan-zoom.js";

export class ViewerZoom {
  /**
   * @param {{stage: HTMLElement, canvas: HTMLCanvasElement, zoomLevel: HTMLButtonElement,
   *   zoomInButton: HTMLButtonElement, zoomOutButton: HTMLButtonElement}} ui  the viewer's elements
   * @param {() => void} onApplied  after each change of view (the viewer keeps the keyboard focus sensible)
   */
  constructor(ui, onApplied) {
    this.ui = ui;
    this.onApplied = onApplied;
    this.view = { scale: 1, x: 0, y: 0 };
    this.fit = 1;
    this.size = null; // the drawn picture's px size; null until one is drawn
    this.pointers = new Map(); // pointerId → stage point
    this.pinch = null;
    const { stage } = ui;
    stage.addEventListener("wheel", (event) => this.wheel(event), { passive: false });
    stage.addEventListener("dblclick", (event) => this.doubleClick(event));
    stage.addEventListener("pointerdown", (event) => this.pointerDown(event));
    stage.addEventListener("pointermove", (event) => this.pointerMove(event));
    stage.addEventListener("pointerup", (event) => this.pointerUp(event));
    stage.addEventListener("pointercancel", (event) => this.pointerUp(event));
  }

  get zoomed() {
    return isZoomed(this.view, this.fit);
  }

  /** The stage's size in px. */
  stageSize() {
    return { width: this.ui.stage.clientWidth, height: this.ui.stage.clientHeight };
  }

  limits() {
    return viewLimits(this.size, this.stageSize(), this.fit);
  }

  /** The stage changed size: refit a fitted picture, keep a zoomed one inside the stage. */
  relayout() {
    if (!this.size) return;
    const { fit, view } = refit(this.view, this.fit, this.size, this.stageSize());
    this.fit = fit;
    this.apply(view);
  }

  /** Show the whole picture (the "Fit" button, key 0, a new photo). */
  fitView() {
    if (!this.size) return;
    const { fit, view } = fittedView(this.size, this.stageSize());
    this.fit = fit;
    this.apply(view);
  }

  /** Zoom by `factor` about the stage point `at` (default the stage's centre). */
  zoomBy(factor, at = null) {
    if (!this.size) return;
    const point = at || { x: this.ui.stage.clientWidth / 2, y: this.ui.stage.clientHeight / 2 };
    this.apply(zoomAt(this.view, factor, point, this.limits()));
  }

  zoomIn() {
    this.zoomBy(ZOOM_STEP);
  }

  zoomOut() {
    this.zoomBy(1 / ZOOM_STEP);
  }

  pan(dx, dy) {
    this.apply(panBy(this.view, dx, dy, this.limits()));
  }

  /** How far an arrow key pans, in px. */
  keyStep() {
    return keyPanStep(this.stageSize());
  }

  apply(view) {
    const { canvas, stage, zoomLevel, zoomInButton, zoomOutButton } = this.ui;
    this.view = view;
    const width = this.size.width * view.scale;
    const height = this.size.height * view.scale;
    Object.assign(canvas.style, {
      width: `${width}px`, height: `${height}px`, transform: `translate(${view.x}px, ${view.y}px)`,
    });
    const percent = Math.round(view.scale * 100);
    zoomLevel.textContent = zoomText(view, this.fit);
    zoomLevel.setAttribute("aria-label", `Zoom ${percent}%. Fit to screen`);
    stage.dataset.zoom = view.scale.toFixed(4);
    stage.dataset.zoomed = String(this.zoomed);
    zoomInButton.disabled = view.scale >= this.limits().maxScale - 1e-6;
    zoomOutButton.disabled = !this.zoomed;
    this.onApplied();
  }

  // -- pointer and wheel ---------------------------------------------------------------------------------

  stagePoint(event) {
    const rect = this.ui.stage.getBoundingClientRect();
    return { x: event.clientX - rect.left, y: event.clientY - rect.top };
  }

  wheel(event) {
    if (!this.size) return;
    event.preventDefault();
    this.zoomBy(wheelFactor(event), this.stagePoint(event));
  }

  doubleClick(event) {
    if (!this.size) return;
    if (this.zoomed) this.fitView();
    else this.apply(zoomAt(this.view, doubleClickFactor(this.fit), this.stagePoint(event), this.limits()));
  }

  pointerDown(event) {
    if (event.target.closest("button")) return;
    this.pointers.set(event.pointerId, this.stagePoint(event));
    this.ui.stage.setPointerCapture(event.pointerId);
    if (this.pointers.size === 2) {
      const [a, b] = [...this.pointers.values()];
      this.pinch = { distance: pinchOf(a, b).distance };
    }
    this.ui.stage.dataset.dragging = String(this.zoomed);
  }

  pointerMove(event) {
    const previous = this.pointers.get(event.pointerId);
    if (!previous) return;
    const point = this.stagePoint(event);
    this.pointers.set(event.pointerId, point);
    if (this.pointers.size === 2 && this.pinch) {
      const [a, b] = [...this.pointers.values()];
      const { distance, centre } = pinchOf(a, b);
      this.zoomBy(distance / this.pinch.distance, centre);
      this.pinch.distance = distance;
    } else if (this.pointers.size === 1 && this.zoomed) {
      this.pan(point.x - previous.x, point.y - previous.y);
    }
  }

  pointerUp(event) {
    this.pointers.delete(event.pointerId);
    if (this.pointers.size < 2) this.pinch = null;
    this.ui.stage.dataset.dragging = "false";
  }
}

// The image viewer's zoom and pan maths, pure (no DOM): a view is `{scale, x, y}`, the picture's top-left
// drawn at (x, y) px in the stage at `scale` screen px per picture px. "Fit" is the scale that shows the
// whole picture inside the stage less a margin; the viewer zooms from fit up to four times fit (at least
// 4×, so a small photo can still be looked at closely), and a picture smaller than the stage stays centred.
// The primitives (fitScale, zoomAt, clampPan) are shared with the edit canvas and live in edit-geometry.js.

import { clampPan, fitScale, zoomAt } from "./edit-geometry.js";

export { clampPan, zoomAt };

export const ZOOM_STEP = 1.25; // one press of + or −
export const FIT_MAX = 2; // a small photo is enlarged to fit the screen at most twice
export const MARGIN = 24; // px of surround kept around a fitted photo
const ZOOMED_BY = 1.001; // scales this close to fit count as fit (rounding after a resize)

/**
 * The bounds a view is kept in: `size` (picture px; 1 × 1 before a picture is drawn), `stage` (px),
 * scales from `fit` to max(4, 4 × fit).
 * @param {{width: number, height: number}|null} size
 * @param {{width: number, height: number}} stage
 * @param {number} fit
 */
export function viewLimits(size, stage, fit) {
  return { size: size || { width: 1, height: 1 }, stage, minScale: fit, maxScale: Math.max(4, fit * 4) };
}

/** The fit scale for a picture of `size` px in a stage of `stage` px, keeping MARGIN px around it. */
export function fitInStage(size, stage) {
  const room = { width: stage.width - 2 * MARGIN, height: stage.height - 2 * MARGIN };
  return fitScale(size, room, FIT_MAX);
}

/** The whole picture, centred at its fit scale: `{fit, view}`. */
export function fittedView(size, stage) {
  const fit = fitInStage(size, stage);
  return { fit, view: clampPan({ scale: fit, x: 0, y: 0 }, viewLimits(size, stage, fit)) };
}

/** Whether `view` is zoomed in beyond `fit` (the viewer's arrow keys then pan instead of stepping). */
export function isZoomed(view, fit) {
  return view.scale > fit * ZOOMED_BY;
}

/**
 * After the stage changed size: a fitted picture is fitted again; a zoomed one keeps its scale (at
 * least the new fit) and is panned back inside the stage. Returns `{fit, view}`.
 */
export function refit(view, oldFit, size, stage) {
  if (!isZoomed(view, oldFit)) return fittedView(size, stage);
  const fit = fitInStage(size, stage);
  return { fit, view: clampPan({ ...view, scale: Math.max(view.scale, fit) }, viewLimits(size, stage, fit)) };
}

/** `view` moved by (dx, dy) px, kept inside the limits. */
export function panBy(view, dx, dy, limits) {
  return clampPan({ ...view, x: view.x + dx, y: view.y + dy }, limits);
}

/**
 * The zoom factor for a wheel event: line-mode deltas count 16 px a line; a pinch on a trackpad (which
 * browsers send as a wheel with ctrlKey) zooms faster than a scroll wheel.
 * @param {{deltaY: number, deltaMode: number, ctrlKey: boolean}} wheel
 */
export function wheelFactor({ deltaY, deltaMode, ctrlKey }) {
  const delta = deltaMode === 1 ? deltaY * 16 : deltaY;
  return Math.exp(-delta * (ctrlKey ? 0.01 : 0.0022));
}

/** A double click on a fitted picture zooms 2×, or to the photo's own pixels if that is closer. */
export function doubleClickFactor(fit) {
  return Math.max(2, 1 / fit);
}

/** How far an arrow key pans a zoomed picture: 15% of the stage's smaller side, in px. */
export function keyPanStep(stage) {
  return Math.round(Math.min(stage.width, stage.height) * 0.15);
}

/** Two pointers (stage px): the distance between them (at least 1) and their midpoint. */
export function pinchOf(a, b) {
  return { distance: Math.hypot(a.x - b.x, a.y - b.y) || 1, centre: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 } };
}

/** The zoom level button's words: "Fit", or the scale as a whole percentage ("150%"). */
export function zoomText(view, fit) {
  return isZoomed(view, fit) ? `${Math.round(view.scale * 100)}%` : "Fit";
}

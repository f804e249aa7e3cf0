// Geometry of non-destructive edits, with no DOM: pure functions the editor, the viewer and the tests share.
//
// Three frames, all in fractions 0..1 of a width and a height (consultcam/images/processing/
// `validate_edits` and `render` are the source of these rules):
//   original  the stored photo as uploaded (upright, before any edit);
//   rotated   after `rotation` (clockwise degrees, 0/90/180/270); `crop` is a rectangle in this frame;
//   final     the rotated photo cut to `crop`; annotations are points in this frame.
// The editor keeps its working copy in the original frame, so a rotation or a new crop never moves a
// mark off the thing it points at; `toServerEdits` and `fromServerEdits` convert at the API boundary.

import { sentenceCase } from "./format.js";

/** processing.DEFAULT_ANNOTATION_COLOR: high-visibility yellow. */

export const DEFAULT_COLOR = "#ffcc00";
/** processing.MAX_ANNOTATIONS and MAX_TEXT_LENGTH. */
export const MAX_ANNOTATIONS = 50;
export const MAX_TEXT_LENGTH = 200;
/** The smallest crop the editor makes, as a fraction of either side (the server refuses < 1 pixel). */
export const MIN_CROP = 0.04;

const FULL = Object.freeze({ x: 0, y: 0, width: 1, height: 1 });
const DECIMALS = 1e6;

/** Any multiple of 90 degrees → 0, 90, 180 or 270 (-90 → 270), as validate_edits stores it. */
export function normaliseRotation(degrees) {
  const turns = Math.round((Number(degrees) || 0) / 90);
  return (((turns % 4) + 4) % 4) * 90;
}

/** Width and height of a `{width, height}` image after `rotation`. */
export function rotatedSize(size, rotation) {
  const quarter = normaliseRotation(rotation) % 180 === 90;
  return quarter ? { width: size.height, height: size.width } : { width: size.width, height: size.height };
}

/**
 * A point of the original frame in the rotated frame. Clockwise 90°: the top-left corner goes to the
 * top-right, so (x, y) → (1 − y, x); exact on pixel centres with processing's x·(width − 1) convention.
 */
export function rotatePoint(point, rotation) {
  const { x, y } = point;
  switch (normaliseRotation(rotation)) {
    case 90: return { x: 1 - y, y: x };
    case 180: return { x: 1 - x, y: 1 - y };
    case 270: return { x: y, y: 1 - x };
    default: return { x, y };
  }
}

/** The inverse of rotatePoint: a point of the rotated frame in the original frame. */
export function unrotatePoint(point, rotation) {
  return rotatePoint(point, 360 - normaliseRotation(rotation));
}

/** A rectangle `{x, y, width, height}` of the original frame in the rotated frame. */
export function rotateRect(rect, rotation) {
  return rectFromPoints(
    rotatePoint({ x: rect.x, y: rect.y }, rotation),
    rotatePoint({ x: rect.x + rect.width, y: rect.y + rect.height }, rotation),
  );
}

export function unrotateRect(rect, rotation) {
  return rotateRect(rect, 360 - normaliseRotation(rotation));
}

/** The rectangle spanned by two corner points, in any order. */
export function rectFromPoints(a, b) {
  return { x: Math.min(a.x, b.x), y: Math.min(a.y, b.y), width: Math.abs(b.x - a.x), height: Math.abs(b.y - a.y) };
}

/** A point of the rotated frame in the final (cropped) frame: may fall outside 0..1. */
export function toCropFrame(point, crop) {
  const c = crop || FULL;
  return { x: (point.x - c.x) / c.width, y: (point.y - c.y) / c.height };
}

export function fromCropFrame(point, crop) {
  const c = crop || FULL;
  return { x: c.x + point.x * c.width, y: c.y + point.y * c.height };
}

/** Original frame → what is shown: rotated, then cropped when `crop` (rotated frame) is given. */
export function toView(point, rotation, crop) {
  return toCropFrame(rotatePoint(point, rotation), crop);
}

export function fromView(point, rotation, crop) {
  return unrotatePoint(fromCropFrame(point, crop), rotation);
}

/** Python's round(): halves to even, so pixel boxes match Pillow's exactly. */
export function pyRound(value) {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * The pixel box processing.render cuts from a rotated image of `size` px: [left, top, right, bottom],
 * right/bottom exclusive. `crop` null → the whole image.
 */
export function cropBoxPx(crop, size) {
  if (!crop) return [0, 0, size.width, size.height];
  return [
    pyRound(crop.x * size.width),
    pyRound(crop.y * size.height),
    Math.min(size.width, pyRound((crop.x + crop.width) * size.width)),
    Math.min(size.height, pyRound((crop.y + crop.height) * size.height)),
  ];
}

/** Size in pixels of the final image: the stored `size`, rotated, then cropped (rotated-frame `crop`). */
export function finalSize(size, rotation, crop) {
  const [left, top, right, bottom] = cropBoxPx(crop, rotatedSize(size, rotation));
  return { width: right - left, height: bottom - top };
}

export function isFullCrop(crop) {
  return !crop || (crop.x <= 0 && crop.y <= 0 && crop.x + crop.width >= 1 && crop.y + crop.height >= 1);
}

/** Keep a crop rectangle inside 0..1 and at least `min` on each side, keeping its position where it can. */
export function clampCrop(rect, min = MIN_CROP) {
  let width = clamp(rect.width, min, 1);
  let height = clamp(rect.height, min, 1);
  const x = clamp(rect.x, 0, 1 - width);
  const y = clamp(rect.y, 0, 1 - height);
  width = Math.min(width, 1 - x);
  height = Math.min(height, 1 - y);
  return { x, y, width, height };
}

/** A crop handle or the whole box dragged by (dx, dy) fractions; `edge` is "move" or a mix of n/s/e/w. */
export function dragCrop(start, edge, dx, dy, min = MIN_CROP) {
  if (edge === "move") {
    return {
      x: clamp(start.x + dx, 0, 1 - start.width),
      y: clamp(start.y + dy, 0, 1 - start.height),
      width: start.width,
      height: start.height,
    };
  }
  let left = start.x;
  let top = start.y;
  let right = start.x + start.width;
  let bottom = start.y + start.height;
  if (edge.includes("w")) left = clamp(left + dx, 0, right - min);
  if (edge.includes("e")) right = clamp(right + dx, left + min, 1);
  if (edge.includes("n")) top = clamp(top + dy, 0, bottom - min);
  if (edge.includes("s")) bottom = clamp(bottom + dy, top + min, 1);
  return { x: left, y: top, width: right - left, height: bottom - top };
}

/**
 * Clip the segment a→b to the unit square (Liang–Barsky). Returns [a', b'] or null when it lies outside.
 */
export function clipSegment(a, b) {
  let t0 = 0;
  let t1 = 1;
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const edges = [[-dx, a.x], [dx, 1 - a.x], [-dy, a.y], [dy, 1 - a.y]];
  for (const [p, q] of edges) {
    if (p === 0) {
      if (q < 0) return null;
    } else {
      const t = q / p;
      if (p < 0) t0 = Math.max(t0, t);
      else t1 = Math.min(t1, t);
      if (t0 > t1) return null;
    }
  }
  return [{ x: a.x + t0 * dx, y: a.y + t0 * dy }, { x: a.x + t1 * dx, y: a.y + t1 * dy }];
}

/**
 * One annotation (original frame, `{id, type, x1, y1, x2, y2, text?, color}`) in the final frame, trimmed to
 * the picture as validate_edits requires (every coordinate 0..1). Returns null when nothing of it is left
 * inside the crop: an arrow or circle wholly outside, or a text label whose anchor is outside.
 */
export function annotationToFinal(annotation, rotation, crop) {
  const a = toView({ x: annotation.x1, y: annotation.y1 }, rotation, crop);
  const base = { type: annotation.type, color: annotation.color || DEFAULT_COLOR };
  if (annotation.id) base.id = annotation.id;
  if (annotation.type === "text") {
    if (!inUnit(a)) return null;
    return { ...base, x1: tidy(a.x), y1: tidy(a.y), text: annotation.text };
  }
  const b = toView({ x: annotation.x2, y: annotation.y2 }, rotation, crop);
  if (annotation.type === "circle") {
    // The ellipse in the box the two points span: the box rotates with the picture, then is cut to it.
    const box = rectFromPoints(a, b);
    const left = Math.max(0, box.x);
    const top = Math.max(0, box.y);
    const right = Math.min(1, box.x + box.width);
    const bottom = Math.min(1, box.y + box.height);
    if (right - left < 1e-4 || bottom - top < 1e-4) return null;
    return { ...base, x1: tidy(left), y1: tidy(top), x2: tidy(right), y2: tidy(bottom) };
  }
  const clipped = clipSegment(a, b);
  if (!clipped) return null;
  const [p, q] = clipped.map((point) => ({ x: tidy(point.x), y: tidy(point.y) }));
  if (p.x === q.x && p.y === q.y) return null;
  return { ...base, x1: p.x, y1: p.y, x2: q.x, y2: q.y };
}

/**
 * The editor's working copy `{rotation, crop, annotations}` (crop and annotations in the original frame)
 * as the `edits` body of PATCH /api/sessions/{id}/images/{imageId}. Nothing to do → `{}` (which clears the
 * edits and restores the original). Returns `{edits, dropped}`: `dropped` counts annotations left out
 * because they lie outside the crop.
 */
export function toServerEdits(model) {
  const rotation = normaliseRotation(model.rotation);
  const rotatedCrop = model.crop && !isFullCrop(model.crop) ? tidyCrop(rotateRect(model.crop, rotation)) : null;
  const annotations = [];
  let dropped = 0;
  for (const annotation of model.annotations || []) {
    const final = annotationToFinal(annotation, rotation, rotatedCrop);
    if (final) annotations.push(final);
    else dropped += 1;
  }
  if (!rotation && !rotatedCrop && !annotations.length) return { edits: {}, dropped };
  return { edits: { rotation, crop: rotatedCrop, annotations }, dropped };
}

/** The server's `edits` (as image.edits) as the editor's working copy, all in the original frame. */
export function fromServerEdits(edits) {
  const rotation = normaliseRotation(edits?.rotation || 0);
  const serverCrop = edits?.crop && !isFullCrop(edits.crop) ? edits.crop : null;
  const crop = serverCrop ? unrotateRect(serverCrop, rotation) : null;
  const annotations = (edits?.annotations || []).map((item, index) => {
    const p1 = fromView({ x: item.x1, y: item.y1 }, rotation, serverCrop);
    const out = {
      id: item.id || `a${index + 1}`, type: item.type, color: item.color || DEFAULT_COLOR, x1: p1.x, y1: p1.y,
    };
    if (item.type === "text") {
      out.text = item.text || "";
      out.x2 = p1.x;
      out.y2 = p1.y;
    } else {
      const p2 = fromView({ x: item.x2, y: item.y2 }, rotation, serverCrop);
      out.x2 = p2.x;
      out.y2 = p2.y;
    }
    return out;
  });
  return { rotation, crop, annotations };
}

/** Whether image.edits changes the picture at all. */
export function hasEdits(edits) {
  if (!edits) return false;
  return Boolean(normaliseRotation(edits.rotation || 0) || !isFullCrop(edits.crop) || edits.annotations?.length);
}

/** "Rotated 90°, cropped, 3 marks": a short description of image.edits, "" when there are none. */
export function describeEdits(edits) {
  if (!hasEdits(edits)) return "";
  const parts = [];
  const rotation = normaliseRotation(edits.rotation || 0);
  if (rotation) parts.push(`rotated ${rotation}°`);
  if (!isFullCrop(edits.crop)) parts.push("cropped");
  const count = edits.annotations?.length || 0;
  if (count) parts.push(`${count} ${count === 1 ? "annotation" : "annotations"}`);
  return sentenceCase(parts.join(", "));
}

// -- screen ↔ picture ----------------------------------------------------------------------------------

/**
 * A pointer position (client px) as fractions of the element box `rect` (a DOMRect of the shown picture).
 * `clampToUnit` keeps it inside the picture.
 */
export function screenToFraction(clientX, clientY, rect, clampToUnit = true) {
  const x = (clientX - rect.left) / rect.width;
  const y = (clientY - rect.top) / rect.height;
  return clampToUnit ? { x: clamp(x, 0, 1), y: clamp(y, 0, 1) } : { x, y };
}

/** The scale that fits `size` (px) inside `box` (px) without cropping; never above `max`. */
export function fitScale(size, box, max = 4) {
  if (!size.width || !size.height || !box.width || !box.height) return 1;
  return Math.min(max, box.width / size.width, box.height / size.height);
}

/**
 * Zoom a view `{scale, x, y}` (the picture's top-left at (x, y) px in the stage, drawn at `scale`) by
 * `factor` around the stage point `at`, keeping that point of the picture under it; the result is
 * clamped to [minScale, maxScale] and panned back inside the stage.
 */
export function zoomAt(view, factor, at, limits) {
  const scale = clamp(view.scale * factor, limits.minScale, limits.maxScale);
  const ratio = scale / view.scale;
  return clampPan({ scale, x: at.x - (at.x - view.x) * ratio, y: at.y - (at.y - view.y) * ratio }, limits);
}

/**
 * Keep the picture (`limits.size` px at view.scale) covering the stage (`limits.stage` px) where it is
 * bigger than the stage, and centred where it is smaller.
 */
export function clampPan(view, limits) {
  const { size, stage } = limits;
  const width = size.width * view.scale;
  const height = size.height * view.scale;
  const x = width <= stage.width ? (stage.width - width) / 2 : clamp(view.x, stage.width - width, 0);
  const y = height <= stage.height ? (stage.height - height) / 2 : clamp(view.y, stage.height - height, 0);
  return { scale: view.scale, x, y };
}

// -- small helpers -------------------------------------------------------------------------------------

export function clamp(value, min, max) {
  return Math.min(max, Math.max(min, value));
}

function inUnit(point) {
  return point.x >= -1e-9 && point.x <= 1 + 1e-9 && point.y >= -1e-9 && point.y <= 1 + 1e-9;
}

/** Six decimals (a 2048 px photo needs four), inside 0..1: tidy JSON that validate_edits accepts. */
function tidy(value) {
  return clamp(Math.round(value * DECIMALS) / DECIMALS, 0, 1);
}

function tidyCrop(rect) {
  const x = tidy(rect.x);
  const y = tidy(rect.y);
  // After rounding x + width must still be at most 1 (validate_edits allows 1e-9 over).
  return { x, y, width: Math.min(tidy(rect.width), 1 - x), height: Math.min(tidy(rect.height), 1 - y) };
}

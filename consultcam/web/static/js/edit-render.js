// Draw a photo with its edits on a <canvas> exactly as `render` (consultcam/images/processing/render.py)
// burns them in with Pillow: the same order (rotate, crop, annotate), the same pixel box, the same stroke,
// halo and text sizes, the same arrowhead. The canvas is drawn at the final picture's own pixel size and
// scaled by CSS, so what the clinician sees is what the record gets.

import { DEFAULT_COLOR, cropBoxPx, normaliseRotation, pyRound, rotatedSize } from "./edit-geometry.js";

/** Pillow draws labels in DejaVu Sans Bold (processing._LABEL_FONTS); the fallbacks have similar widths. */
export const LABEL_FONT_FAMILY = '"DejaVu Sans", Verdana, "Segoe UI", Tahoma, Arial, sans-serif';

/**
 * Line and text sizes (px) processing._draw_annotations uses on a final picture of `size` px:
 * stroke ≈ 1/300 of the long edge (at least 3), halo half of it, text ≈ 1/32 of the long edge (at least 12).
 */
export function annotationStyle(size) {
  const longEdge = Math.max(size.width, size.height);
  const stroke = Math.max(3, pyRound(longEdge / 300));
  const fontSize = Math.max(12, pyRound(longEdge / 32));
  return { stroke, halo: Math.max(1, Math.floor(stroke / 2)), fontSize, textOutline: Math.max(1, pyRound(fontSize / 14)) };
}

/**
 * Draw `img` (the stored original, loaded) rotated clockwise by `rotation` and cut to `crop` (fractions of
 * the rotated picture, or null) onto `canvas`, which is resized to the result's pixel size. Returns that
 * size `{width, height}`. 90° turns at whole-pixel offsets copy pixels exactly, as Pillow's transpose does.
 */
export function drawPhoto(canvas, img, rotation, crop) {
  const natural = { width: img.naturalWidth || img.width, height: img.naturalHeight || img.height };
  const turned = rotatedSize(natural, rotation);
  const [left, top, right, bottom] = cropBoxPx(crop, turned);
  const size = { width: Math.max(1, right - left), height: Math.max(1, bottom - top) };
  if (canvas.width !== size.width) canvas.width = size.width;
  if (canvas.height !== size.height) canvas.height = size.height;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, size.width, size.height);
  ctx.imageSmoothingEnabled = false; // integer offsets and right angles: pixels are copied, not resampled
  ctx.translate(-left, -top);
  switch (normaliseRotation(rotation)) {
    case 90: ctx.translate(turned.width, 0); ctx.rotate(Math.PI / 2); break;
    case 180: ctx.translate(turned.width, turned.height); ctx.rotate(Math.PI); break;
    case 270: ctx.translate(0, turned.height); ctx.rotate(-Math.PI / 2); break;
    default: break;
  }
  ctx.drawImage(img, 0, 0, natural.width, natural.height);
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.imageSmoothingEnabled = true;
  return size;
}

/**
 * Draw annotations (server form: fractions of the picture on `ctx`, which is `size` px) as Pillow does.
 * `styleSize` is the final picture whose long edge sets the line and text sizes (default `size`; the crop
 * tool shows the whole rotated photo but with the sizes the cropped result will have).
 */
export function drawAnnotations(ctx, annotations, size, styleSize = size) {
  const style = annotationStyle(styleSize);
  for (const item of annotations) drawAnnotation(ctx, item, size, style);
}

/** One annotation; returns its bounding box in px `{left, top, right, bottom}` (for hit-testing). */
export function drawAnnotation(ctx, item, size, style = annotationStyle(size)) {
  const color = item.color || DEFAULT_COLOR;
  const outline = haloColor(color);
  ctx.save();
  try {
    if (item.type === "text") return drawText(ctx, item, size, style, color, outline);
    const start = pixel(item.x1, item.y1, size);
    const end = pixel(item.x2, item.y2, size);
    if (item.type === "circle") {
      // Pillow's ellipse(box, width) fills a band `width` wide inside the box (both ends inclusive).
      const box = { left: Math.min(start.x, end.x), top: Math.min(start.y, end.y), right: Math.max(start.x, end.x), bottom: Math.max(start.y, end.y) };
      ellipseBand(ctx, box, style.stroke + 2 * style.halo, style.halo, outline);
      ellipseBand(ctx, box, style.stroke, 0, color);
      return { left: box.left - style.halo, top: box.top - style.halo, right: box.right + 1 + style.halo, bottom: box.bottom + 1 + style.halo };
    }
    const { shaftEnd, head } = arrowGeometry(start, end, style.stroke);
    ctx.lineCap = "butt";
    line(ctx, start, shaftEnd, style.stroke + 2 * style.halo, outline);
    // processing.render fills the head with the halo colour, then with the colour over it: no halo shows.
    line(ctx, start, shaftEnd, style.stroke, color);
    ctx.beginPath();
    ctx.moveTo(head[0].x + 0.5, head[0].y + 0.5);
    for (const point of head.slice(1)) ctx.lineTo(point.x + 0.5, point.y + 0.5);
    ctx.closePath();
    ctx.fillStyle = color;
    ctx.fill();
    const xs = [start.x, ...head.map((p) => p.x)];
    const ys = [start.y, ...head.map((p) => p.y)];
    const pad = style.stroke / 2 + style.halo;
    return { left: Math.min(...xs) - pad, top: Math.min(...ys) - pad, right: Math.max(...xs) + pad + 1, bottom: Math.max(...ys) + pad + 1 };
  } finally {
    ctx.restore();
  }
}

/**
 * Where a text label is drawn: processing._draw_text puts its top-left (the font's ascender line) at
 * (x1, y1) and moves it back inside when it would run off the right or bottom edge. Returns the draw
 * origin and the label's box in px.
 */
export function textLayout(ctx, item, size, style = annotationStyle(size)) {
  ctx.save();
  ctx.font = labelFont(style.fontSize);
  const metrics = ctx.measureText(item.text || "");
  ctx.restore();
  const ascent = metrics.fontBoundingBoxAscent ?? style.fontSize * 0.93;
  const origin = pixel(item.x1, item.y1, size);
  const sw = style.textOutline;
  const box = (x, y) => ({
    left: x - metrics.actualBoundingBoxLeft - sw,
    top: y + ascent - metrics.actualBoundingBoxAscent - sw,
    right: x + metrics.actualBoundingBoxRight + sw,
    bottom: y + ascent + metrics.actualBoundingBoxDescent + sw,
  });
  const first = box(origin.x, origin.y);
  const x = origin.x - Math.max(0, first.right - size.width + 1) + Math.max(0, -first.left);
  const y = origin.y - Math.max(0, first.bottom - size.height + 1) + Math.max(0, -first.top);
  return { x, y, baseline: y + ascent, box: box(x, y) };
}

/** processing._arrow: the shaft stops inside a head 5 strokes long and 1.2 heads wide. */
export function arrowGeometry(start, end, stroke) {
  const dx = end.x - start.x;
  const dy = end.y - start.y;
  const length = Math.hypot(dx, dy) || 1;
  const ux = dx / length;
  const uy = dy / length;
  const headLength = Math.min(length, 5 * stroke);
  const halfWidth = 0.6 * headLength;
  const base = { x: end.x - ux * headLength, y: end.y - uy * headLength };
  const head = [
    end,
    { x: base.x - uy * halfWidth, y: base.y + ux * halfWidth },
    { x: base.x + uy * halfWidth, y: base.y - ux * halfWidth },
  ];
  return { shaftEnd: { x: end.x - ux * headLength * 0.5, y: end.y - uy * headLength * 0.5 }, head };
}

/** processing._halo_color: black around light colours, white around dark ones. */
export function haloColor(color) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16));
  return 0.299 * r + 0.587 * g + 0.114 * b >= 128 ? "#000000" : "#ffffff";
}

export function labelFont(sizePx) {
  return `bold ${sizePx}px ${LABEL_FONT_FAMILY}`;
}

// -- internals -----------------------------------------------------------------------------------------

/** processing's point(): x·(width − 1), y·(height − 1), a pixel index; canvas pixel centres are at +0.5. */
function pixel(x, y, size) {
  return { x: x * (size.width - 1), y: y * (size.height - 1) };
}

function line(ctx, a, b, width, color) {
  ctx.beginPath();
  ctx.moveTo(a.x + 0.5, a.y + 0.5);
  ctx.lineTo(b.x + 0.5, b.y + 0.5);
  ctx.lineWidth = width;
  ctx.strokeStyle = color;
  ctx.stroke();
}

/** A band `width` px wide just inside the box grown by `grow` px on every side. */
function ellipseBand(ctx, box, width, grow, color) {
  const left = box.left - grow;
  const top = box.top - grow;
  const right = box.right + 1 + grow; // pixel edges: the box's right column is inside
  const bottom = box.bottom + 1 + grow;
  const rx = (right - left - width) / 2;
  const ry = (bottom - top - width) / 2;
  if (rx <= 0 || ry <= 0) {
    ctx.fillStyle = color;
    ctx.fillRect(left, top, right - left, bottom - top);
    return;
  }
  ctx.beginPath();
  ctx.ellipse((left + right) / 2, (top + bottom) / 2, rx, ry, 0, 0, Math.PI * 2);
  ctx.lineWidth = width;
  ctx.strokeStyle = color;
  ctx.stroke();
}

function drawText(ctx, item, size, style, color, outline) {
  const layout = textLayout(ctx, item, size, style);
  ctx.font = labelFont(style.fontSize);
  ctx.textBaseline = "alphabetic";
  ctx.textAlign = "left";
  ctx.lineJoin = "round";
  ctx.lineWidth = 2 * style.textOutline;
  ctx.strokeStyle = outline;
  ctx.strokeText(item.text || "", layout.x, layout.baseline);
  ctx.fillStyle = color;
  ctx.fillText(item.text || "", layout.x, layout.baseline);
  return layout.box;
}

// Geometry of non-destructive edits (consultcam/web/static/js/edit-geometry.js): the frames convert there
// and back without drift, pixel boxes round as Python does (so the canvas and Pillow cut the same pixels),
// marks are trimmed to the crop as validate_edits requires, and zoom keeps the point under the pointer.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  annotationToFinal, clampCrop, clampPan, clipSegment, cropBoxPx, describeEdits, dragCrop, finalSize,
  fromServerEdits, fromView, hasEdits, normaliseRotation, pyRound, rotatePoint, rotateRect, rotatedSize,
  screenToFraction, toServerEdits, toView, unrotatePoint, unrotateRect, zoomAt,
} from "../../consultcam/web/static/js/edit-geometry.js";

const near = (a, b, message) => assert.ok(Math.abs(a - b) < 1e-9, `${message}: ${a} ≠ ${b}`);

describe("rotation", () => {
  it("is stored as 0, 90, 180 or 270 clockwise", () => {
    assert.deepEqual([-90, 0, 90, 360, 450, -270, "180"].map(normaliseRotation), [270, 0, 90, 0, 90, 90, 180]);
  });

  it("a quarter turn swaps width and height", () => {
    assert.deepEqual(rotatedSize({ width: 1600, height: 1067 }, 90), { width: 1067, height: 1600 });
    assert.deepEqual(rotatedSize({ width: 1600, height: 1067 }, 180), { width: 1600, height: 1067 });
  });

  it("clockwise: the top-left corner goes to the top-right, and back again", () => {
    assert.deepEqual(rotatePoint({ x: 0, y: 0 }, 90), { x: 1, y: 0 });
    assert.deepEqual(rotatePoint({ x: 0, y: 0 }, 270), { x: 0, y: 1 });
    for (const rotation of [0, 90, 180, 270]) {
      const p = { x: 0.123, y: 0.789 };
      const back = unrotatePoint(rotatePoint(p, rotation), rotation);
      near(back.x, p.x, `x at ${rotation}`);
      near(back.y, p.y, `y at ${rotation}`);
      const rect = { x: 0.1, y: 0.2, width: 0.3, height: 0.4 };
      const again = unrotateRect(rotateRect(rect, rotation), rotation);
      for (const key of ["x", "y", "width", "height"]) near(again[key], rect[key], `${key} at ${rotation}`);
    }
  });

  it("original → shown → original is exact with a crop", () => {
    const crop = { x: 0.2, y: 0.1, width: 0.5, height: 0.6 };
    const p = { x: 0.4, y: 0.55 };
    const back = fromView(toView(p, 90, crop), 90, crop);
    near(back.x, p.x, "x");
    near(back.y, p.y, "y");
  });
});

describe("pixels, as Pillow cuts them", () => {
  it("rounds halves to even like Python's round()", () => {
    assert.deepEqual([0.5, 1.5, 2.5, 3.5, 2.4, 2.6].map(pyRound), [0, 2, 2, 4, 2, 3]);
  });

  it("the crop box and final size follow processing.render", () => {
    assert.deepEqual(cropBoxPx(null, { width: 100, height: 50 }), [0, 0, 100, 50]);
    assert.deepEqual(cropBoxPx({ x: 0.125, y: 0.25, width: 0.5, height: 0.5 }, { width: 100, height: 50 }), [12, 12, 62, 38]);
    assert.deepEqual(finalSize({ width: 1600, height: 1067 }, 90, { x: 0, y: 0, width: 0.5, height: 0.5 }), { width: 534, height: 800 });
  });
});

describe("crop box", () => {
  it("stays inside the photo and at least the minimum size", () => {
    assert.deepEqual(clampCrop({ x: -0.5, y: 0.9, width: 0.3, height: 0.3 }), { x: 0, y: 0.7, width: 0.3, height: 0.3 });
    const tiny = clampCrop({ x: 0.5, y: 0.5, width: 0, height: 0 }, 0.04);
    assert.equal(tiny.width, 0.04);
    assert.equal(tiny.height, 0.04);
  });

  it("dragging a handle never turns the box inside out", () => {
    const start = { x: 0.2, y: 0.2, width: 0.4, height: 0.4 };
    const dragged = dragCrop(start, "nw", 0.9, 0.9, 0.04);
    near(dragged.width, 0.04, "width");
    near(dragged.height, 0.04, "height");
    assert.deepEqual(dragCrop(start, "move", 5, -5), { x: 0.6, y: 0, width: 0.4, height: 0.4 });
  });
});

describe("marks trimmed to the picture", () => {
  it("an arrow that leaves the crop is cut at its edge; one wholly outside is dropped", () => {
    const [a, b] = clipSegment({ x: 0.5, y: 0.5 }, { x: 1.5, y: 0.5 });
    assert.deepEqual([a, b], [{ x: 0.5, y: 0.5 }, { x: 1, y: 0.5 }]);
    assert.equal(clipSegment({ x: 1.2, y: 0.2 }, { x: 1.5, y: 0.8 }), null);
  });

  it("a label whose anchor is outside the crop is dropped; a circle is cut to it", () => {
    const crop = { x: 0.5, y: 0.5, width: 0.5, height: 0.5 };
    assert.equal(annotationToFinal({ type: "text", x1: 0.2, y1: 0.2, text: "Out" }, 0, crop), null);
    const circle = annotationToFinal({ type: "circle", x1: 0.4, y1: 0.4, x2: 0.7, y2: 0.7 }, 0, crop);
    assert.deepEqual(circle, { type: "circle", color: "#ffcc00", x1: 0, y1: 0, x2: 0.4, y2: 0.4 });
  });

  it("server edits round-trip through the working copy", () => {
    const edits = {
      rotation: 90, crop: { x: 0.1, y: 0.2, width: 0.6, height: 0.7 },
      annotations: [{ id: "a1", type: "arrow", color: "#ffcc00", x1: 0.1, y1: 0.9, x2: 0.5, y2: 0.5 }],
    };
    assert.deepEqual(toServerEdits(fromServerEdits(edits)), { edits, dropped: 0 });
  });
});

describe("the viewer's words and view", () => {
  it("describes edits in a short sentence", () => {
    assert.equal(hasEdits({}), false);
    assert.equal(describeEdits({ rotation: 0, crop: null, annotations: [] }), "");
    assert.equal(
      describeEdits({ rotation: 90, crop: { x: 0, y: 0, width: 0.5, height: 1 }, annotations: [{}, {}] }),
      "Rotated 90°, cropped, 2 annotations",
    );
  });

  it("zooming keeps the point under the pointer still, and panning keeps the picture on the stage", () => {
    const limits = { minScale: 0.5, maxScale: 8, size: { width: 1000, height: 800 }, stage: { width: 500, height: 400 } };
    const view = { scale: 1, x: -200, y: -100 };
    const at = { x: 250, y: 200 };
    const zoomed = zoomAt(view, 2, at, limits);
    near((at.x - zoomed.x) / zoomed.scale, (at.x - view.x) / view.scale, "picture x under the pointer");
    near((at.y - zoomed.y) / zoomed.scale, (at.y - view.y) / view.scale, "picture y under the pointer");
    assert.deepEqual(clampPan({ scale: 1, x: 100, y: -900 }, limits), { scale: 1, x: 0, y: -400 });
    assert.deepEqual(clampPan({ scale: 0.25, x: 0, y: 0 }, limits), { scale: 0.25, x: 125, y: 100 });
  });

  it("a pointer outside the picture is kept on its edge", () => {
    const rect = { left: 100, top: 50, width: 200, height: 100 };
    assert.deepEqual(screenToFraction(150, 100, rect), { x: 0.25, y: 0.5 });
    assert.deepEqual(screenToFraction(400, 0, rect), { x: 1, y: 0 });
    assert.deepEqual(screenToFraction(400, 0, rect, false), { x: 1.5, y: -0.5 });
  });
});

// Moved from tests/e2e/test_image_editor.py (test_geometry_round_trips) with its assertions unchanged: pure
// geometry needs no browser.
describe("rotation, crop and the server form convert there and back without drift", () => {
  const near6 = (a, b) => Math.abs(a - b) < 1e-6;
  /** pytest.approx's default: relative 1e-6. */
  const approx = (actual, expected, message) => assert.ok(
    Math.abs(actual - expected) <= Math.max(1e-6 * Math.abs(expected), 1e-12), `${message}: ${actual} ≉ ${expected}`,
  );

  it("round-trips as the browser test asserted", () => {
    // A clockwise quarter turn takes the top-left corner to the top-right.
    assert.deepEqual(rotatePoint({ x: 0, y: 0 }, 90), { x: 1, y: 0 });
    assert.equal([0, 90, 180, 270].every((r) => {
      const p = unrotatePoint(rotatePoint({ x: 0.2, y: 0.7 }, r), r);
      return near6(p.x, 0.2) && near6(p.y, 0.7);
    }), true);
    assert.deepEqual([-90, 360, 450, 180].map(normaliseRotation), [270, 0, 90, 180]);
    assert.deepEqual([0.5, 1.5, 2.5, 2.4999, 2.6].map(pyRound), [0, 2, 2, 2, 3]);

    // Crop and annotations survive the trip to the server form and back.
    const model = { rotation: 90, crop: { x: 0.1, y: 0.2, width: 0.5, height: 0.6 }, annotations: [
      { id: "a", type: "arrow", x1: 0.2, y1: 0.3, x2: 0.4, y2: 0.5, color: "#ffcc00" },
      { id: "b", type: "circle", x1: 0.25, y1: 0.35, x2: 0.45, y2: 0.55, color: "#ffcc00" },
      { id: "c", type: "text", x1: 0.3, y1: 0.4, x2: 0.3, y2: 0.4, text: "Lesion", color: "#ffcc00" },
      { id: "gone", type: "arrow", x1: 0.9, y1: 0.9, x2: 0.95, y2: 0.95, color: "#ffcc00" },
    ] };
    const { edits, dropped } = toServerEdits(model);
    assert.equal(edits.rotation, 90);
    // The crop turns with the picture: x = 1 - (y + height), y = x, and the sides swap.
    const expectedCrop = { x: 0.2, y: 0.1, width: 0.6, height: 0.5 };
    assert.deepEqual(Object.keys(edits.crop).sort(), Object.keys(expectedCrop).sort());
    for (const key of Object.keys(expectedCrop)) approx(edits.crop[key], expectedCrop[key], `crop.${key}`);
    assert.deepEqual(edits.annotations.map((a) => a.type), ["arrow", "circle", "text"]);
    assert.equal(dropped, 1); // the arrow outside the crop is left out, and said so
    const [arrow] = edits.annotations;
    // Original (0.2, 0.3) → rotated (0.7, 0.2) → in the crop: ((0.7 - 0.2) / 0.6, (0.2 - 0.1) / 0.5).
    assert.ok(Math.abs(arrow.x1 - 0.5 / 0.6) <= 1e-6 && Math.abs(arrow.y1 - 0.2) <= 1e-6, JSON.stringify(arrow));
    assert.ok(edits.annotations.every((a) => ["x1", "y1"].every((k) => a[k] >= 0 && a[k] <= 1)));
    const again = fromServerEdits(edits);
    assert.equal(["x", "y", "width", "height"].every((k) => near6(again.crop[k], model.crop[k])), true);
    assert.equal(["x1", "y1", "x2", "y2"].every((k) => near6(again.annotations[0][k], model.annotations[0][k])), true);
    assert.deepEqual(toServerEdits({ rotation: 0, crop: null, annotations: [] }).edits, {});
    assert.deepEqual(clipSegment({ x: -0.5, y: 0.5 }, { x: 0.5, y: 0.5 }), [{ x: 0, y: 0.5 }, { x: 0.5, y: 0.5 }]);
    assert.equal(clipSegment({ x: -0.5, y: -0.5 }, { x: -0.1, y: 2 }), null);
    // Python rounds halves to even (2.5 → 2, 7.5 → 8), as render does.
    assert.deepEqual(cropBoxPx({ x: 0.25, y: 0, width: 0.5, height: 1 }, { width: 10, height: 4 }), [2, 0, 8, 4]);
    const zoom = zoomAt({ scale: 1, x: 0, y: 0 }, 2, { x: 100, y: 50 },
      { minScale: 0.5, maxScale: 4, size: { width: 400, height: 200 }, stage: { width: 400, height: 200 } });
    assert.deepEqual(zoom, { scale: 2, x: -100, y: -50 });
  });
});

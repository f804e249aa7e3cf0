// The image viewer's zoom and pan maths (consultcam/web/static/js/pan-zoom.js): what a clinician looking
// at a photo would notice. Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  FIT_MAX, MARGIN, ZOOM_STEP, clampPan, doubleClickFactor, fitInStage, fittedView, isZoomed, keyPanStep, panBy,
  pinchOf, refit, viewLimits, wheelFactor, zoomAt, zoomText,
} from "../../consultcam/web/static/js/pan-zoom.js";

const STAGE = { width: 1000, height: 800 };
const PHOTO = { width: 4000, height: 3000 }; // a phone photo, larger than the stage

/** Where picture point `p` (picture px) is on the stage under `view`. */
const onStage = (view, p) => ({ x: view.x + p.x * view.scale, y: view.y + p.y * view.scale });
/** Which picture point is under stage point `s`. */
const underStage = (view, s) => ({ x: (s.x - view.x) / view.scale, y: (s.y - view.y) / view.scale });
const near = (a, b, eps = 1e-9) => Math.abs(a - b) <= eps;

test("fit shows the whole photo inside the stage less the margin, centred", () => {
  const { fit, view } = fittedView(PHOTO, STAGE);
  // The limiting side is the width: (1000 - 2 × 24) / 4000.
  assert.equal(fit, (STAGE.width - 2 * MARGIN) / PHOTO.width);
  const width = PHOTO.width * fit;
  const height = PHOTO.height * fit;
  assert.ok(width <= STAGE.width - 2 * MARGIN + 1e-9 && height <= STAGE.height - 2 * MARGIN + 1e-9);
  assert.ok(near(view.x, (STAGE.width - width) / 2) && near(view.y, (STAGE.height - height) / 2));
  assert.equal(isZoomed(view, fit), false);
  assert.equal(zoomText(view, fit), "Fit");
});

test("a small photo is enlarged to fit at most twice", () => {
  const small = { width: 100, height: 80 };
  assert.equal(fitInStage(small, STAGE), FIT_MAX);
  const { view } = fittedView(small, STAGE);
  assert.deepEqual(view, { scale: 2, x: 400, y: 320 }); // centred
});

test("a stage with no room yet (not laid out) fits at scale 1", () => {
  assert.equal(fitInStage(PHOTO, { width: 2 * MARGIN, height: 2 * MARGIN }), 1);
});

test("zooming about a point keeps the picture point under it where it was", () => {
  const { fit, view } = fittedView(PHOTO, STAGE);
  const limits = viewLimits(PHOTO, STAGE, fit);
  const at = { x: 620, y: 410 };
  const before = underStage(view, at);
  const zoomed = zoomAt(view, 3, at, limits);
  assert.ok(near(zoomed.scale, fit * 3));
  const after = underStage(zoomed, at);
  assert.ok(near(after.x, before.x, 1e-6) && near(after.y, before.y, 1e-6), JSON.stringify({ before, after }));
  assert.equal(isZoomed(zoomed, fit), true);
  assert.equal(zoomText(zoomed, fit), `${Math.round(zoomed.scale * 100)}%`);
});

test("zoom stays between fit and four times fit (at least 4×)", () => {
  const { fit, view } = fittedView(PHOTO, STAGE);
  const limits = viewLimits(PHOTO, STAGE, fit);
  assert.equal(limits.maxScale, 4); // fit is 0.238: 4 × fit is under 4×, so 4× (the photo's pixels, enlarged)
  const centre = { x: 500, y: 400 };
  let zoomed = view;
  for (let i = 0; i < 40; i += 1) zoomed = zoomAt(zoomed, ZOOM_STEP, centre, limits);
  assert.equal(zoomed.scale, limits.maxScale);
  let out = zoomed;
  for (let i = 0; i < 40; i += 1) out = zoomAt(out, 1 / ZOOM_STEP, centre, limits);
  assert.equal(out.scale, fit);
  assert.deepEqual(out, view); // all the way out is the fitted, centred view again
  const small = viewLimits({ width: 100, height: 80 }, STAGE, 2);
  assert.equal(small.maxScale, 8); // four times a fit of 2
});

test("a zoomed photo can be panned only as far as its edges; one smaller than the stage stays centred", () => {
  const { fit, view } = fittedView(PHOTO, STAGE);
  const limits = viewLimits(PHOTO, STAGE, fit);
  const zoomed = zoomAt(view, 4, { x: 500, y: 400 }, limits);
  const farLeft = panBy(zoomed, 1e6, 1e6, limits);
  assert.deepEqual(onStage(farLeft, { x: 0, y: 0 }), { x: 0, y: 0 }); // the top-left corner stops at the stage's
  const farRight = panBy(zoomed, -1e6, -1e6, limits);
  const corner = onStage(farRight, { x: PHOTO.width, y: PHOTO.height });
  assert.ok(near(corner.x, STAGE.width, 1e-6) && near(corner.y, STAGE.height, 1e-6));
  const step = panBy(zoomed, -30, 20, limits);
  assert.ok(near(step.x, zoomed.x - 30) && near(step.y, zoomed.y + 20)); // inside the edges a pan is exact
  assert.deepEqual(panBy(view, 200, -200, limits), view); // fitted: nothing to pan
  assert.deepEqual(clampPan({ scale: 1, x: -50, y: 999 }, viewLimits({ width: 200, height: 100 }, STAGE, 1)),
    { scale: 1, x: 400, y: 350 });
});

test("after the stage is resized a fitted photo is fitted again and a zoomed one keeps its scale", () => {
  const { fit, view } = fittedView(PHOTO, STAGE);
  const wider = { width: 1600, height: 1000 };
  const refitted = refit(view, fit, PHOTO, wider);
  assert.deepEqual(refitted, fittedView(PHOTO, wider));
  const zoomed = zoomAt(view, 3, { x: 500, y: 400 }, viewLimits(PHOTO, STAGE, fit));
  const kept = refit(zoomed, fit, PHOTO, wider);
  assert.equal(kept.view.scale, zoomed.scale);
  assert.ok(kept.view.x <= 0 && kept.view.x >= wider.width - PHOTO.width * kept.view.scale);
  // Zoomed less than the new fit (the stage grew a lot): brought up to the new fit, never below it.
  const huge = { width: 8000, height: 6000 };
  const grown = refit(zoomed, fit, PHOTO, huge);
  assert.equal(grown.view.scale, Math.max(zoomed.scale, grown.fit));
  assert.ok(grown.view.scale >= grown.fit);
});

test("wheel, double click, pinch and arrow-key steps", () => {
  assert.ok(wheelFactor({ deltaY: -100, deltaMode: 0, ctrlKey: false }) > 1); // wheel up zooms in
  assert.ok(wheelFactor({ deltaY: 100, deltaMode: 0, ctrlKey: false }) < 1);
  assert.equal(wheelFactor({ deltaY: 3, deltaMode: 1, ctrlKey: false }), wheelFactor({ deltaY: 48, deltaMode: 0, ctrlKey: false }));
  // A trackpad pinch (ctrlKey) zooms faster than the same scroll.
  assert.ok(wheelFactor({ deltaY: -10, deltaMode: 0, ctrlKey: true }) > wheelFactor({ deltaY: -10, deltaMode: 0, ctrlKey: false }));
  // Zooming in and back out by the same wheel travel returns to the same scale.
  assert.ok(near(wheelFactor({ deltaY: -120, deltaMode: 0, ctrlKey: false }) * wheelFactor({ deltaY: 120, deltaMode: 0, ctrlKey: false }), 1));
  assert.equal(doubleClickFactor(0.25), 4); // to the photo's own pixels
  assert.equal(doubleClickFactor(1.5), 2);
  assert.equal(keyPanStep(STAGE), 120);
  assert.deepEqual(pinchOf({ x: 0, y: 0 }, { x: 30, y: 40 }), { distance: 50, centre: { x: 15, y: 20 } });
  assert.equal(pinchOf({ x: 5, y: 5 }, { x: 5, y: 5 }).distance, 1); // never divides by zero
});

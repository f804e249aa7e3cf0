// The image editor's edit model (consultcam/web/static/js/edit-model.js) as a clinician meets it: marks stay
// on what they point at through rotations and crops, Undo gives back what was there, crops stay inside the
// photo, and what is sent to the server is what processing.validate_edits accepts.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { MAX_ANNOTATIONS, MIN_CROP, fromView, toView } from "../../consultcam/web/static/js/edit-geometry.js";
import {
  EditModel, UNDO_LIMIT, defaultShape, distanceToSegment, hitTest,
} from "../../consultcam/web/static/js/edit-model.js";
import { fakeTextBox, randomSessions } from "./edit-sessions.mjs";
import { editsProblems } from "./edits-schema.mjs";

const PHOTO = { width: 1600, height: 1067 }; // a landscape clinical photo, px
const close = (actual, expected, message) => assert.ok(Math.abs(actual - expected) < 1e-6, `${message}: ${actual} ≠ ${expected}`);
const closePoint = (actual, expected, message) => {
  close(actual.x, expected.x, `${message} x`);
  close(actual.y, expected.y, `${message} y`);
};
const send = (model) => model.serverEdits(PHOTO, fakeTextBox);
const strip = (edits) => JSON.parse(JSON.stringify(edits, (key, value) => (key === "id" ? undefined : value)));

describe("a new edit", () => {
  it("sends {} (the original photo) and is not dirty until something changes", () => {
    const model = new EditModel(null);
    assert.deepEqual(send(model), {});
    assert.equal(model.dirty, false);
    assert.equal(model.isEmpty, true);
    assert.equal(model.canUndo, false);
    model.rotate(90);
    assert.equal(model.dirty, true);
    assert.deepEqual(send(model), { rotation: 90, crop: null, annotations: [] });
  });

  it("four quarter turns are no change at all", () => {
    const model = new EditModel({});
    for (let i = 0; i < 4; i += 1) model.rotate(90);
    assert.equal(model.rotation, 0);
    assert.equal(model.dirty, false);
    assert.deepEqual(send(model), {});
  });

  it("rotating left from upright is 270° clockwise, as the server stores it", () => {
    const model = new EditModel({});
    assert.equal(model.rotate(-90), 270);
    assert.equal(send(model).rotation, 270);
  });
});

describe("marks stay where they were drawn", () => {
  it("an arrow drawn on a rotated photo is sent where it was drawn, and follows the photo when it turns again", () => {
    const model = new EditModel({});
    model.rotate(90);
    const tail = { x: 0.2, y: 0.3 };
    const head = { x: 0.6, y: 0.7 };
    model.addDrawn("arrow", tail, head, model.viewCrop(false));
    const [arrow] = send(model).annotations;
    assert.deepEqual(strip(arrow), { type: "arrow", color: "#ffcc00", x1: 0.2, y1: 0.3, x2: 0.6, y2: 0.7 });

    // A further clockwise quarter turn carries every point (x, y) of the picture to (1 − y, x).
    model.rotate(90);
    const [turned] = send(model).annotations;
    closePoint({ x: turned.x1, y: turned.y1 }, { x: 1 - tail.y, y: tail.x }, "tail after turning");
    closePoint({ x: turned.x2, y: turned.y2 }, { x: 1 - head.y, y: head.x }, "head after turning");
  });

  it("the head points at the same spot of the photo whatever the rotation and crop", () => {
    const model = new EditModel({});
    model.addDrawn("arrow", { x: 0.1, y: 0.1 }, { x: 0.45, y: 0.55 }, null);
    const spot = { x: model.annotations[0].x2, y: model.annotations[0].y2 }; // original frame
    model.rotate(90);
    model.cropTo({ x: 0.2, y: 0.25, width: 0.6, height: 0.5 });
    model.rotate(90);
    const edits = send(model);
    const [arrow] = edits.annotations;
    const pointedAt = fromView({ x: arrow.x2, y: arrow.y2 }, edits.rotation, edits.crop);
    closePoint(pointedAt, spot, "the photo's point under the head");
  });

  it("a label is anchored at its top-left and carries the bottom-right of its box as x2/y2", () => {
    const model = new EditModel({});
    const label = model.addText({ x: 0.25, y: 0.5 }, "  Lesion 6 mm  ", null);
    assert.equal(label.text, "Lesion 6 mm");
    const [sent] = send(model).annotations;
    assert.equal(sent.x1, 0.25);
    assert.equal(sent.y1, 0.5);
    close(sent.x2, Math.round(((0.25 * 1599 + 12 * 11) / 1599) * 1e6) / 1e6, "x2");
    close(sent.y2, Math.round(((0.5 * 1066 + 20) / 1066) * 1e6) / 1e6, "y2");
  });

  it("a label near the right edge keeps x2 inside the photo", () => {
    const model = new EditModel({});
    model.addText({ x: 0.98, y: 0.99 }, "A long label that runs off the edge", null);
    const [sent] = send(model).annotations;
    assert.equal(sent.x2, 1);
    assert.equal(sent.y2, 1);
    assert.deepEqual(editsProblems(send(model)), []);
  });

  it("moving a mark on a rotated photo moves it the way the pointer went, and never off the photo", () => {
    const model = new EditModel({});
    model.rotate(90);
    const circle = model.addDrawn("circle", { x: 0.4, y: 0.4 }, { x: 0.5, y: 0.5 }, null);
    model.move(circle.id, 0.1, 0, null); // 10 % to the right on screen
    const [sent] = send(model).annotations;
    closePoint({ x: sent.x1, y: sent.y1 }, { x: 0.5, y: 0.4 }, "moved corner");
    model.move(circle.id, 5, 5, null); // far past the bottom-right corner
    for (const item of model.annotations) {
      for (const key of ["x1", "y1", "x2", "y2"]) assert.ok(item[key] >= 0 && item[key] <= 1, `${key} = ${item[key]}`);
    }
    assert.deepEqual(editsProblems(send(model)), []);
  });
});

describe("undo", () => {
  it("takes back each change in turn, down to the stored edits", () => {
    const stored = {
      rotation: 180, crop: { x: 0.1, y: 0.1, width: 0.8, height: 0.8 },
      annotations: [{ id: "a1", type: "circle", x1: 0.2, y1: 0.2, x2: 0.4, y2: 0.4, color: "#ffcc00" }],
    };
    const model = new EditModel(stored);
    assert.deepEqual(send(model), stored);
    const arrow = model.addDrawn("arrow", { x: 0.5, y: 0.5 }, { x: 0.7, y: 0.6 }, model.viewCrop(false));
    model.nudge(arrow.id, 0.01, 0, model.viewCrop(false));
    model.rotate(90);
    model.remove("a1");
    model.resetCrop();
    assert.equal(model.dirty, true);
    const steps = [];
    while (model.undo()) steps.push(send(model));
    assert.equal(steps.length, 5);
    assert.equal(steps[0].crop !== null, true, "the crop comes back first");
    assert.equal(steps[1].annotations.length, 2, "then the deleted circle");
    assert.equal(steps[2].rotation, 180, "then the rotation");
    assert.deepEqual(send(model), stored);
    assert.equal(model.dirty, false);
    assert.equal(model.undo(), false, "nothing more to undo");
  });

  it("clear removes every edit and undo brings them all back", () => {
    const model = new EditModel({ rotation: 90, annotations: [{ type: "text", x1: 0.1, y1: 0.1, text: "Left" }] });
    const before = send(model);
    assert.equal(model.clear(), true);
    assert.deepEqual(send(model), {});
    assert.equal(model.clear(), false, "nothing left to clear");
    model.undo();
    assert.deepEqual(send(model), before);
  });

  it("a drag that ends where it began leaves no undo step; the history keeps the last UNDO_LIMIT changes", () => {
    const model = new EditModel({});
    model.remember();
    model.forget();
    assert.equal(model.canUndo, false);
    for (let i = 0; i < UNDO_LIMIT + 20; i += 1) model.rotate(90);
    let undone = 0;
    while (model.undo()) undone += 1;
    assert.equal(undone, UNDO_LIMIT);
  });

  it("each undoable change tells the editor first (it hides a stale save error)", () => {
    let told = 0;
    const model = new EditModel({}, { onRemember: () => { told += 1; } });
    model.rotate(90);
    model.addDrawn("circle", { x: 0.1, y: 0.1 }, { x: 0.2, y: 0.2 }, null);
    model.cropTo({ x: 0, y: 0, width: 0.5, height: 0.5 });
    assert.equal(told, 3);
  });
});

describe("crop", () => {
  it("is clamped inside the photo and to at least MIN_CROP a side", () => {
    const model = new EditModel({});
    model.cropTo({ x: 0.9, y: -0.2, width: 0.5, height: 2 });
    const rect = model.rotatedCrop;
    assert.ok(rect.x >= 0 && rect.y >= 0 && rect.x + rect.width <= 1 + 1e-12 && rect.y + rect.height <= 1 + 1e-12, JSON.stringify(rect));
    model.cropTo({ x: 0.5, y: 0.5, width: 0.001, height: 0.001 });
    assert.ok(model.rotatedCrop.width >= MIN_CROP - 1e-12 && model.rotatedCrop.height >= MIN_CROP - 1e-12);
    assert.deepEqual(editsProblems(send(model)), []);
  });

  it("arrow keys move the crop box up to the photo's edge and no further; Shift resizes it", () => {
    const model = new EditModel({});
    model.cropTo({ x: 0.7, y: 0.7, width: 0.25, height: 0.25 });
    for (let i = 0; i < 10; i += 1) model.nudgeCrop(0.01, 0.01);
    closePoint(model.rotatedCrop, { x: 0.75, y: 0.75 }, "box at the corner");
    close(model.rotatedCrop.width, 0.25, "width kept");
    model.nudgeCrop(-0.05, 0, true);
    close(model.rotatedCrop.width, 0.2, "Shift+Left narrows it");
  });

  it("a crop of the whole photo is no crop", () => {
    const model = new EditModel({});
    model.cropTo({ x: 0, y: 0, width: 1, height: 1 });
    assert.equal(model.crop, null);
    assert.deepEqual(send(model), {});
  });

  it("covers the same part of the photo after a rotation", () => {
    const model = new EditModel({});
    model.cropTo({ x: 0.1, y: 0.2, width: 0.3, height: 0.4 });
    model.rotate(90);
    const { crop } = send(model);
    // The original's rectangle x 0.1–0.4, y 0.2–0.6 turned clockwise: x = 1 − y, y = x.
    closePoint(crop, { x: 0.4, y: 0.1 }, "top-left");
    close(crop.width, 0.4, "width");
    close(crop.height, 0.3, "height");
  });

  it("marks the crop leaves out are counted, shown while cropping and not sent", () => {
    const model = new EditModel({});
    model.addDrawn("circle", { x: 0.05, y: 0.05 }, { x: 0.15, y: 0.15 }, null);
    model.addDrawn("arrow", { x: 0.6, y: 0.6 }, { x: 0.7, y: 0.7 }, null);
    model.cropTo({ x: 0.5, y: 0.5, width: 0.5, height: 0.5 });
    assert.equal(model.dropped, 1);
    assert.equal(send(model).annotations.length, 1);
    assert.equal(model.shown(model.viewCrop(true)).length, 2, "the crop tool shows the whole photo");
    assert.equal(model.shown(model.viewCrop(false)).length, 1);
    const [arrow] = send(model).annotations;
    closePoint({ x: arrow.x1, y: arrow.y1 }, { x: 0.2, y: 0.2 }, "arrow in the cropped picture");
  });
});

describe("annotations", () => {
  it(`a photo carries at most ${MAX_ANNOTATIONS}`, () => {
    const model = new EditModel({});
    for (let i = 0; i < MAX_ANNOTATIONS; i += 1) {
      assert.ok(model.addDrawn("circle", { x: 0.1, y: 0.1 }, { x: 0.2, y: 0.2 }, null));
    }
    assert.equal(model.full, true);
    assert.equal(model.addText({ x: 0.5, y: 0.5 }, "One too many", null), null);
    assert.equal(send(model).annotations.length, MAX_ANNOTATIONS);
  });

  it("delete removes just that mark", () => {
    const model = new EditModel({});
    const a = model.addDrawn("arrow", { x: 0.1, y: 0.1 }, { x: 0.2, y: 0.2 }, null);
    const b = model.addDrawn("circle", { x: 0.3, y: 0.3 }, { x: 0.4, y: 0.4 }, null);
    assert.equal(model.remove(a.id).type, "arrow");
    assert.equal(model.remove(a.id), null);
    assert.deepEqual(model.annotations.map((item) => item.id), [b.id]);
  });

  it("stored edits come back unchanged, ids and colours included", () => {
    const stored = {
      rotation: 270, crop: { x: 0.25, y: 0, width: 0.5, height: 0.75 },
      annotations: [
        { id: "a1", type: "arrow", x1: 0.1, y1: 0.2, x2: 0.3, y2: 0.4, color: "#00ff00" },
        { id: "t1", type: "text", x1: 0.5, y1: 0.5, text: "Edge", color: "#ffcc00" },
      ],
    };
    const model = new EditModel(stored);
    const [arrow, text] = send(model).annotations;
    assert.deepEqual(arrow, stored.annotations[0]);
    assert.deepEqual({ ...text, x2: undefined, y2: undefined }, { ...stored.annotations[1], x2: undefined, y2: undefined });
    assert.equal(model.dirty, false);
  });
});

describe("what is sent matches the server's schema (processing.validate_edits)", () => {
  it("after any mix of edits a clinician can make", () => {
    const sessions = randomSessions();
    assert.ok(sessions.filter((edits) => edits.annotations?.length && edits.crop).length > 20, "sessions with marks and crops");
    for (const edits of sessions) assert.deepEqual(editsProblems(edits), [], JSON.stringify(edits));
  });
});

describe("placing and hitting marks", () => {
  it("a click places an arrow pointing at the spot, from inside the photo even at its top-left corner", () => {
    for (const at of [{ x: 0.5, y: 0.5 }, { x: 0.02, y: 0.03 }]) {
      const [tail, head] = defaultShape("arrow", at, PHOTO);
      assert.deepEqual(head, at);
      for (const v of [tail.x, tail.y]) assert.ok(v >= 0 && v <= 1, `tail ${JSON.stringify(tail)} off the photo`);
      // The same length on screen across and down: a 45° arrow.
      close(Math.abs(head.x - tail.x) * PHOTO.width, Math.abs(head.y - tail.y) * PHOTO.height, "45°");
    }
  });

  it("a click places a round circle around the spot", () => {
    const [a, b] = defaultShape("circle", { x: 0.5, y: 0.5 }, PHOTO);
    closePoint({ x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 }, { x: 0.5, y: 0.5 }, "centre");
    close((b.x - a.x) * PHOTO.width, (b.y - a.y) * PHOTO.height, "round on screen");
  });

  it("hits an arrow near its line but not in the empty corner of its box, and the topmost mark first", () => {
    const size = { width: 1001, height: 1001 };
    const arrow = { id: "a", type: "arrow", x1: 0, y1: 0, x2: 0.5, y2: 0.5 };
    const circle = { id: "c", type: "circle", x1: 0.4, y1: 0.4, x2: 0.6, y2: 0.6 };
    const boxes = [
      { item: arrow, box: { left: 0, top: 0, right: 500, bottom: 500 } },
      { item: circle, box: { left: 400, top: 400, right: 600, bottom: 600 } },
    ];
    const layout = { size, scale: 1, stroke: 3 };
    assert.equal(hitTest({ x: 0.2, y: 0.21 }, boxes, layout), "a");
    assert.equal(hitTest({ x: 0.4, y: 0.05 }, boxes, layout), null, "inside the arrow's box, far from its line");
    assert.equal(hitTest({ x: 0.45, y: 0.45 }, boxes, layout), "c", "the circle is drawn over the arrow");
    assert.equal(hitTest({ x: 0.9, y: 0.1 }, boxes, layout), null);
    close(distanceToSegment({ x: 0, y: 1 }, { x: 0, y: 0 }, { x: 1, y: 0 }), 1, "distance");
  });

  it("shown annotations are in the shown frame: what the clinician sees", () => {
    const model = new EditModel({});
    model.rotate(180);
    model.addDrawn("arrow", { x: 0.2, y: 0.2 }, { x: 0.3, y: 0.4 }, null);
    const [shown] = model.shown(null);
    closePoint({ x: shown.x1, y: shown.y1 }, { x: 0.2, y: 0.2 }, "tail");
    closePoint(toView({ x: model.annotations[0].x1, y: model.annotations[0].y1 }, 180, null), { x: 0.2, y: 0.2 }, "original frame");
  });
});

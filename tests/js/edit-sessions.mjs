// Editing sessions a clinician might have, played on the edit model: a seeded mix of rotations, crops,
// arrows, circles, labels, moves and undos, including points dragged off the picture. Each returns what
// the editor would send (EditModel.serverEdits). Used by edit-model.test.mjs and by tests/test_js.py, which
// gives the results to the server's own validate_edits.

import { EditModel } from "../../consultcam/web/static/js/edit-model.js";

const PHOTO = { width: 1600, height: 1067 };
/** A canvas-like text measure: 12 px a character, 20 px high, from the label's top-left. */
export const fakeTextBox = (item, size) => ({
  right: item.x1 * (size.width - 1) + 12 * item.text.length, bottom: item.y1 * (size.height - 1) + 20,
});

/** `runs` sessions of `steps` changes each, from `seed`; returns the `edits` each would send. */
export function randomSessions(runs = 200, steps = 12, seed = 11) {
  let state = seed;
  const random = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  const point = () => ({ x: random() * 1.2 - 0.1, y: random() * 1.2 - 0.1 });
  const results = [];
  for (let run = 0; run < runs; run += 1) {
    const model = new EditModel({});
    for (let step = 0; step < steps; step += 1) {
      const view = model.viewCrop(random() < 0.2);
      const choice = Math.floor(random() * 7);
      if (choice === 0) model.rotate(random() < 0.5 ? 90 : -90);
      else if (choice === 1) model.cropTo({ ...point(), width: random(), height: random() });
      else if (choice === 2) model.addDrawn("arrow", point(), point(), view);
      else if (choice === 3) model.addDrawn("circle", point(), point(), view);
      else if (choice === 4) model.addText(point(), "Mole, 4 mm", view);
      else if (choice === 5 && model.annotations.length) model.move(model.annotations[0].id, random() - 0.5, random() - 0.5, view);
      else model.undo();
    }
    results.push(model.serverEdits(PHOTO, fakeTextBox));
  }
  return results;
}

// `node tests/js/edit-sessions.mjs` prints the sessions' edits as JSON (for tests/test_js.py).
if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(JSON.stringify(randomSessions()));
}

// What the phone says when its part is over (consultcam/web/static/js/phone-endings.js):
// run with `node --test tests/js/`.

import assert from "node:assert/strict";
import { test } from "node:test";

import { endingCopy } from "../../consultcam/web/static/js/phone-endings.js";

const name = "Aroha Ngata";

test("every ending has a title, words, one next step, a tone, an icon and a badge", () => {
  const endings = [["committed"], ["revoked"], ["paired-elsewhere"], ["wrong-patient"], ["ended", "cancelled"],
    ["ended", "idle"], ["ended", undefined]];
  for (const [kind, reason] of endings) {
    const copy = endingCopy(kind, { name, reason });
    for (const key of ["title", "text", "next", "tone", "icon", "badge"]) {
      assert.ok(copy[key], `${kind}/${reason}: ${key}`);
    }
    assert.ok(["ok", "info", "warn"].includes(copy.tone));
  }
});

test("committed names the patient's record", () => {
  const copy = endingCopy("committed", { name });
  assert.equal(copy.title, "Saved to the record");
  assert.match(copy.text, /in Aroha Ngata's record/);
  assert.equal(copy.badge, "Committed");
});

test("photos deleted from the phone are counted", () => {
  assert.match(endingCopy("revoked", { name, unsent: 1 }).text, / 1 photo not yet sent was deleted from this phone\.$/);
  assert.match(endingCopy("revoked", { name, unsent: 3 }).text, / 3 photos not yet sent were deleted from this phone\.$/);
  assert.doesNotMatch(endingCopy("revoked", { name }).text, /deleted/);
});

test("'Not this patient?' says whether the desktop was told", () => {
  const told = endingCopy("wrong-patient", { name, notified: true });
  assert.match(told.text, /No photos were left on it\. The desktop has been told\.$/);
  const untold = endingCopy("wrong-patient", { name, unsent: 2, notified: false });
  assert.match(untold.text, /2 photos not yet sent were deleted/);
  assert.match(untold.text, /could not be told: ask the clinician to disconnect the phone there\.$/);
  assert.equal(told.tone, "warn");
});

test("an ended session: cancelled, idle, or closed on the desktop", () => {
  assert.equal(endingCopy("ended", { name, reason: "cancelled" }).title, "Session cancelled");
  assert.equal(endingCopy("ended", { name, reason: "cancelled" }).badge, "Cancelled");
  assert.match(endingCopy("ended", { name, reason: "idle" }).text, /no activity/);
  assert.equal(endingCopy("ended", { name }).text, "It was closed on the desktop.");
  assert.equal(endingCopy("ended", { name }).badge, "Ended");
});

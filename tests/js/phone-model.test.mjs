// The phone page's pure rules (consultcam/web/static/js/phone-model.js): run with `node --test tests/js/`.

import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import { describe, test } from "node:test";

import {
  applySettings, capacityNote, createState, editablePhotos, newPhoto, overallProgress, pendingPhotos,
  refusedFilesNote, remainingCapacity, revocationEnding, uploadBatch, uploadButtonText,
} from "../../consultcam/web/static/js/phone-model.js";

// newPhoto() takes its id from the Web Crypto API, a global in browsers and node ≥ 19 (Debian's node 18 has it
// only as a module).
globalThis.crypto ??= webcrypto;

/** A state holding photos with these statuses (and any extra fields per photo). */
function stateWith(statuses, { config = { maxImages: 10, warnImages: 5 }, serverImages = [] } = {}) {
  const state = createState(config, 1000);
  state.photos = statuses.map((entry) => {
    const extra = typeof entry === "string" ? { status: entry } : entry;
    return { ...newPhoto(state, {}), ...extra };
  });
  state.serverImages = new Set(serverImages);
  return state;
}

describe("createState", () => {
  test("takes the page's caps, with defaults", () => {
    assert.equal(createState({ maxImages: 8, warnImages: 3 }).settings.maxImages, 8);
    assert.equal(createState({ maxImages: 8, warnImages: 3 }).settings.warnImages, 3);
    assert.equal(createState(null).settings.maxImages, 50);
    assert.equal(createState(undefined).settings.warnImages, 20);
    assert.equal(createState().screen, "pairing");
  });

  test("photo sequence numbers start at the given time and grow", () => {
    const state = createState({}, 5000);
    assert.equal(newPhoto(state).seq, 5001);
    assert.equal(newPhoto(state).seq, 5002);
    assert.notEqual(newPhoto(state).id, newPhoto(state).id);
  });

  test("a new photo is preparing, with its file name and capture time", () => {
    const photo = newPhoto(createState(), { capturedAt: "2026-01-02T03:04:05.000Z", filename: "a.jpg" });
    assert.equal(photo.status, "preparing");
    assert.equal(photo.filename, "a.jpg");
    assert.equal(photo.capturedAt, "2026-01-02T03:04:05.000Z");
    assert.deepEqual(photo.metadata, {});
    assert.equal(newPhoto(createState()).filename, null);
  });
});

describe("applySettings", () => {
  test("capture settings win; the session fills the issue-5 settings they lack", () => {
    const state = createState();
    applySettings(state, { consentRequired: true, phoneCanCommit: true, requiredMetadata: ["bodySite"] },
      { maxImages: 12, phoneCanCommit: false });
    assert.equal(state.settings.maxImages, 12);
    assert.equal(state.settings.phoneCanCommit, false);
    assert.equal(state.settings.consentRequired, true);
    assert.deepEqual(state.settings.requiredMetadata, ["bodySite"]);
  });

  test("no capture settings (a resumed page): the session's own", () => {
    const state = createState();
    applySettings(state, { phoneCanCommit: true }, null);
    assert.equal(state.settings.phoneCanCommit, true);
    assert.equal(state.settings.maxEdgePx, 2048);
  });
});

describe("which photos", () => {
  const all = ["preparing", "ready", "queued", "uploading", "registering", "done", "failed"];

  test("pending: every photo not yet sent", () => {
    assert.deepEqual(pendingPhotos(stateWith(all)).map((p) => p.status),
      ["preparing", "ready", "queued", "uploading", "registering", "failed"]);
  });

  test("editable: not being sent and not sent", () => {
    assert.deepEqual(editablePhotos(stateWith(all)).map((p) => p.status), ["preparing", "ready", "failed"]);
  });

  test("upload batch: editable photos with bytes, or bytes on the way", () => {
    const state = stateWith([
      { status: "ready", blob: "jpeg" }, { status: "failed", blob: null, ready: null },
      { status: "preparing", ready: Promise.resolve() }, { status: "uploading", blob: "jpeg" },
    ]);
    assert.deepEqual(uploadBatch(state).map((p) => p.status), ["ready", "preparing"]);
  });
});

describe("capacity", () => {
  test("the cap less the server's images and the phone's pending photos", () => {
    const state = stateWith(["ready", "done", "failed"], { serverImages: ["a", "b", "c"] });
    assert.equal(remainingCapacity(state), 10 - 3 - 2);
  });

  test("no note below the warning level", () => {
    assert.equal(capacityNote(stateWith(["ready"], { serverImages: ["a"] })), null);
  });

  test("a warning from warnImages on, saying how many more fit", () => {
    assert.deepEqual(capacityNote(stateWith(["ready", "ready"], { serverImages: ["a", "b", "c"] })), {
      level: "warn", text: "5 photos in this session. It holds at most 10; 5 more can be added.",
    });
  });

  test("full is an error", () => {
    const state = stateWith(["ready"], { serverImages: ["a", "b", "c", "d", "e", "f", "g", "h", "i"] });
    assert.equal(capacityNote(state).level, "error");
    assert.match(capacityNote(state).text, /^This session is full \(10 photos\)/);
  });

  test("a refusal of picked files comes first", () => {
    const state = stateWith([]);
    state.refusedNote = refusedFilesNote(10, 2);
    assert.deepEqual(capacityNote(state), {
      level: "error", text: "The session can hold 10 photos, so 2 photos were not added.",
    });
    assert.equal(refusedFilesNote(10, 1), "The session can hold 10 photos, so 1 photo was not added.");
  });
});

describe("upload button", () => {
  test("counts what it sends", () => {
    assert.equal(uploadButtonText(stateWith([])), "Upload");
    assert.equal(uploadButtonText(stateWith(["ready"])), "Upload 1 photo");
    assert.equal(uploadButtonText(stateWith(["ready", "preparing", "done"])), "Upload all 2 photos");
  });

  test("says Retry when every photo left has failed", () => {
    assert.equal(uploadButtonText(stateWith(["failed", "failed", "done"])), "Retry 2 photos");
    assert.equal(uploadButtonText(stateWith(["failed", "ready"])), "Upload all 2 photos");
  });

  test("waiting for the network, then uploading, come before counts", () => {
    const state = stateWith(["ready", { status: "uploading", waiting: true }]);
    state.uploading = true;
    assert.equal(uploadButtonText(state), "Waiting for the network…");
    state.photos[1].waiting = false;
    assert.equal(uploadButtonText(state), "Uploading…");
  });
});

describe("overall progress", () => {
  test("hidden with nothing on its way", () => {
    assert.equal(overallProgress(stateWith(["ready", "done", "failed"])).active, false);
  });

  test("bytes count 90%, registering 95%, sent 100%", () => {
    const state = stateWith([
      { status: "uploading", progress: 0.5 }, { status: "registering" }, { status: "done" }, { status: "ready" },
    ]);
    const progress = overallProgress(state);
    assert.equal(progress.active, true);
    assert.equal(progress.total, 3); // the ready photo is not in this batch
    assert.equal(progress.done, 1);
    assert.ok(Math.abs(progress.fraction - (0.45 + 0.95 + 1) / 3) < 1e-9);
    assert.equal(progress.text, "Sending 2 of 3…");
  });

  test("the last photo reads 'n of n', not past it", () => {
    const state = stateWith(["done", "done"]);
    state.uploading = true;
    assert.equal(overallProgress(state).text, "Sending 2 of 2…");
  });

  test("offline: says so, with how many are sent", () => {
    const state = stateWith([{ status: "queued", waiting: true }, "done"]);
    const progress = overallProgress(state);
    assert.equal(progress.waiting, true);
    assert.equal(progress.text, "Waiting for the network · 1 of 2 sent");
  });
});

describe("phone.revoked", () => {
  const session = { phone: { id: "p1" } };

  test("about this phone, or no phone named: this phone's ending", () => {
    assert.equal(revocationEnding({ phoneId: "p1" }, session), "revoked");
    assert.equal(revocationEnding({}, session), "revoked");
    assert.equal(revocationEnding({ phoneId: "p1" }, {}), "revoked");
    assert.equal(revocationEnding({ phoneId: "p1", reason: "wrong-patient" }, session), "wrong-patient");
    assert.equal(revocationEnding({ reason: "paired-elsewhere" }, session), "paired-elsewhere");
    assert.equal(revocationEnding({ phoneId: "p1", reason: "idle" }, session), "revoked");
  });

  test("about another phone: nothing", () => {
    assert.equal(revocationEnding({ phoneId: "p2", reason: "wrong-patient" }, session), null);
  });
});

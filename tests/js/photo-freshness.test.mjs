// The desktop page's snapshot reconciliation (consultcam/web/static/js/photo-freshness.js): a session
// snapshot fetched while newer news of a photo arrived never puts the older state back.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { PhotoFreshness, reconcileSnapshot } from "../../consultcam/web/static/js/photo-freshness.js";

const photo = (id, label, url = `https://s3.example/${id}?v=1`) => ({ id, metadata: { label }, urls: { full: url } });
const byId = (...images) => new Map(images.map((image) => [image.id, image]));

test("the snapshot is the truth when nothing happened since it was asked for", () => {
  const freshness = new PhotoFreshness();
  freshness.stamp("a"); // seen before the snapshot was asked for: not newer
  const asked = freshness.ticket();
  const shown = byId(photo("a", "old"), photo("gone", "deleted elsewhere"));
  const snapshot = [photo("a", "new"), photo("b", "added while offline")];
  const { remove, images } = reconcileSnapshot(snapshot, shown, (id) => freshness.newerThan(id, asked), false);
  assert.deepEqual(remove, ["gone"]);
  assert.deepEqual(images, snapshot);
});

test("a photo changed after the snapshot was asked for keeps its newer state, with the snapshot's fresh URL", () => {
  const freshness = new PhotoFreshness();
  const asked = freshness.ticket();
  freshness.stamp("a"); // e.g. the clinician saved a label while the snapshot was on its way
  const shown = byId(photo("a", "newer label", "https://s3.example/a?v=expired"));
  const snapshot = [photo("a", "older label", "https://s3.example/a?v=2")];
  const { remove, images } = reconcileSnapshot(snapshot, shown, (id) => freshness.newerThan(id, asked), false);
  assert.deepEqual(remove, []);
  assert.equal(images[0].metadata.label, "newer label");
  assert.equal(images[0].urls.full, "https://s3.example/a?v=2");
});

test("a photo deleted after the snapshot was asked for stays deleted", () => {
  const freshness = new PhotoFreshness();
  const asked = freshness.ticket();
  freshness.stamp("a"); // image.deleted arrived: removed from the gallery and stamped
  const { images } = reconcileSnapshot([photo("a", "x")], new Map(), (id) => freshness.newerThan(id, asked), false);
  assert.deepEqual(images, []);
});

test("a photo added after the snapshot was asked for is not removed for being missing from it", () => {
  const freshness = new PhotoFreshness();
  const asked = freshness.ticket();
  freshness.stamp("new");
  const shown = byId(photo("new", "just uploaded"));
  const { remove } = reconcileSnapshot([], shown, (id) => freshness.newerThan(id, asked), false);
  assert.deepEqual(remove, []);
});

test("once the session has ended on the page, nothing shown is removed", () => {
  const freshness = new PhotoFreshness();
  const asked = freshness.ticket();
  const shown = byId(photo("a", "committed"));
  const { remove } = reconcileSnapshot([], shown, (id) => freshness.newerThan(id, asked), true);
  assert.deepEqual(remove, []);
});

test("tickets and stamps rise: only changes after a ticket are newer than it", () => {
  const freshness = new PhotoFreshness();
  freshness.stamp("a");
  const first = freshness.ticket();
  assert.equal(freshness.newerThan("a", first), false);
  assert.equal(freshness.newerThan("never-seen", first), false);
  freshness.stamp("a");
  assert.equal(freshness.newerThan("a", first), true);
  assert.equal(freshness.newerThan("a", freshness.ticket()), false);
});

// The upload back-off rule (consultcam/web/static/js/upload-retry.js): run with `node --test tests/js/`.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { BASE_DELAY_MS, TRIES, afterFailure, backoffDelay } from "../../consultcam/web/static/js/upload-retry.js";

const middle = () => 0.5; // no jitter

describe("afterFailure", () => {
  test("an error retrying cannot fix fails at once", () => {
    assert.deepEqual(afterFailure({ retryable: false, online: true, failures: 0 }), { action: "throw" });
    assert.deepEqual(afterFailure({ retryable: false, online: false, failures: 0 }), { action: "throw" });
  });

  test("a retryable error is tried again after 600 ms, then 1.2 s, then given up", () => {
    assert.equal(TRIES, 3);
    let failures = 0;
    const delays = [];
    for (;;) {
      const next = afterFailure({ retryable: true, online: true, failures, random: middle });
      if (next.action === "throw") break;
      assert.equal(next.action, "retry");
      failures = next.failures;
      delays.push(next.delayMs);
    }
    assert.deepEqual(delays, [BASE_DELAY_MS, 2 * BASE_DELAY_MS]);
    assert.equal(failures, TRIES - 1);
  });

  test("offline: wait for the network without spending an attempt", () => {
    assert.deepEqual(afterFailure({ retryable: true, online: false, failures: 2 }), { action: "wait-online", failures: 2 });
    // …so a phone that keeps dropping off the network still gets all its attempts once it is back.
    const next = afterFailure({ retryable: true, online: true, failures: 1, random: middle });
    assert.deepEqual(next, { action: "retry", failures: 2, delayMs: 1200 });
  });
});

describe("backoffDelay", () => {
  test("doubles per failure, with ±15% jitter", () => {
    assert.equal(backoffDelay(1, 0.5), 600);
    assert.equal(backoffDelay(2, 0.5), 1200);
    assert.ok(Math.abs(backoffDelay(1, 0) - 510) < 1e-9);
    assert.ok(Math.abs(backoffDelay(1, 1) - 690) < 1e-9);
    assert.ok(Math.abs(backoffDelay(2, 1) - 1380) < 1e-9);
  });
});

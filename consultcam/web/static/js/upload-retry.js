// When an upload step is tried again: the back-off rule of upload-queue.js as a pure decision, so it can be
// tested without a network (tests/js/upload-retry.test.mjs). A step is tried up to TRIES times while its
// error is retryable (ApiError.retryable: the network, a timeout, 408, 429 or a 5xx), waiting 600 ms, then
// 1.2 s, each ±15% so phones that failed together do not retry together. A failure while the phone is
// offline spends no attempt: the queue waits for the network instead.

export const TRIES = 3;
export const BASE_DELAY_MS = 600;
const JITTER = 0.15;

/**
 * What to do after a failed attempt.
 * @param {{retryable: boolean, online: boolean, failures: number, random?: () => number}} facts
 *   retryable: the error is one trying again can fix (false for an abort); online: navigator.onLine now;
 *   failures: attempts that failed before this one; random: 0…1 (Math.random), for the jitter
 * @returns {{action: "throw"} | {action: "wait-online", failures: number}
 *   | {action: "retry", failures: number, delayMs: number}}
 *   failures: the count to carry into the next attempt
 */
export function afterFailure({ retryable, online, failures, random = Math.random }) {
  if (!retryable) return { action: "throw" };
  if (!online) return { action: "wait-online", failures }; // this attempt does not count
  const spent = failures + 1;
  if (spent >= TRIES) return { action: "throw" };
  return { action: "retry", failures: spent, delayMs: backoffDelay(spent, random()) };
}

/**
 * The wait before the next attempt, in ms: BASE_DELAY_MS × 2^(failures − 1), scaled by 0.85…1.15.
 * @param {number} failures attempts failed so far (1 or more)
 * @param {number} random 0…1
 */
export function backoffDelay(failures, random) {
  return BASE_DELAY_MS * 2 ** (failures - 1) * (1 - JITTER + random * 2 * JITTER);
}

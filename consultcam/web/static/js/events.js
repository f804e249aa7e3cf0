// The session's Server-Sent Events stream, with a visible connection state and catch-up after a drop.
//
// The browser's EventSource reconnects by itself after a dropped connection and resends Last-Event-ID, so
// the server replays what was missed. When it gives up (the stream answered with an error status, or the
// network failed hard) this wrapper opens a new EventSource with back-off, passing the last id as the
// `lastEventId` query parameter. Either way `onReconnected` runs after a gap so the page can also reload
// the current state: catch-up does not depend on the server's replay window.
//
// The server ends a stream for good when its credential is revoked or its session ends: it sends the event
// that explains it (e.g. `phone.revoked`), then a `stream.end` frame {reason, detail}, and closes. The wrapper
// then stops (no reconnection) and lets the page learn the new state. A stream the server refuses to open
// (the EventSource cannot see why) is probed once with fetch: 401/403/404 stop it as fatal, 410 (the session
// ended) stops it like `stream.end`, 429 (too many open) and 5xx are retried with back-off.

import { ApiError } from "./api.js";

export const EVENT_TYPES = [
  "phone.paired", "phone.revoked", "consent.recorded",
  "image.added", "image.updated", "image.analysed", "image.deleted",
  "commit.started", "commit.progress", "session.committed", "commit.failed",
  "session.expired",
];

const MAX_DELAY_MS = 15_000;
const OFFLINE_AFTER_FAILURES = 3;
// A dropped Wi-Fi link can leave a TCP connection that looks open for minutes. When the server sends its
// keep-alive as an event (`event: ping`), a silence longer than this means the connection is dead.
const SILENCE_MS = 45_000;

/**
 * States: "connecting" (first connection), "live", "reconnecting" (a gap, retrying), "offline" (several
 * attempts failed; still retrying), "closed" (stopped for good).
 */
export class EventStream {
  /**
   * @param {string} url the events URL (same-origin; cookies authenticate)
   * @param {object} handlers
   *   onEvent({type, sessionId, at, data, id}), onState(state), onReconnected() after any gap,
   *   check(): optional async probe before a manual reconnect; a non-retryable ApiError stops the stream
   *   and is passed to onFatal(err) (the session was deleted or this phone was disconnected),
   *   onEnded({reason, detail}): the server ended the stream for good ("credential-revoked",
   *   "session-ended"); without it the page's onReconnected() runs, so it reloads and sees the new state.
   */
  constructor(url, { onEvent, onState, onReconnected, check, onFatal, onEnded } = {}) {
    this.url = url;
    this.handlers = { onEvent, onState, onReconnected, check, onFatal, onEnded };
    this.refused = false;
    this.state = "idle";
    this.lastEventId = null;
    this.source = null;
    this.failures = 0;
    this.hadGap = false;
    this.everOpened = false;
    this.timer = null;
    this.paused = false;
    this.lastHeard = 0;
    this.heardPing = false;
    this.onOnline = () => { if (this.state !== "closed" && !this.paused) this.reconnectNow(); };
    // The browser knows the network went: the open connection is gone even if the socket does not say so.
    this.onOffline = () => {
      if (this.state === "closed" || this.paused) return;
      this.teardown();
      this.hadGap = true;
      this.failures = OFFLINE_AFTER_FAILURES;
      this.setState("offline");
      this.scheduleReconnect();
    };
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.watchdog = setInterval(() => {
      if (this.heardPing && this.state === "live" && Date.now() - this.lastHeard > SILENCE_MS) this.drop();
    }, 5000);
  }

  start() {
    if (this.state === "closed") return;
    this.setState(this.everOpened ? "reconnecting" : "connecting");
    this.open();
  }

  /** Stop for good (session finished, page leaving). */
  close() {
    this.teardown();
    clearInterval(this.watchdog);
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    this.setState("closed");
  }

  /** The server ended the stream for good: stop, then let the page learn why. */
  ended(info) {
    if (this.state === "closed") return;
    this.close();
    if (this.handlers.onEnded) this.handlers.onEnded(info);
    else this.handlers.onReconnected?.();
  }

  /** Ops and test hook: behave as if the network dropped the connection; reconnects by itself. */
  drop() {
    if (this.state === "closed") return;
    this.teardown();
    this.hadGap = true;
    this.scheduleReconnect();
  }

  /** Test hook: drop the connection and stay disconnected until resume(). */
  pause() {
    if (this.state === "closed") return;
    this.paused = true;
    this.teardown();
    this.hadGap = true;
    this.setState("reconnecting");
  }

  resume() {
    this.paused = false;
    if (this.state !== "closed" && !this.source) this.reconnectNow();
  }

  /** Reconnect immediately (the Refresh button, the browser coming back online). */
  reconnectNow() {
    if (this.state === "closed") return;
    this.teardown();
    this.hadGap = this.hadGap || this.everOpened;
    this.failures = 0;
    this.setState("reconnecting");
    this.open();
  }

  // -- internals --------------------------------------------------------------------------------------

  open() {
    if (this.paused) return;
    const url = this.lastEventId
      ? `${this.url}${this.url.includes("?") ? "&" : "?"}lastEventId=${encodeURIComponent(this.lastEventId)}`
      : this.url;
    const source = new EventSource(url, { withCredentials: true });
    this.source = source;
    source.onopen = () => {
      if (source !== this.source) return;
      this.failures = 0;
      this.lastHeard = Date.now();
      this.setState("live");
      if (this.hadGap && this.everOpened) {
        this.hadGap = false;
        this.handlers.onReconnected?.();
      }
      this.hadGap = false;
      this.everOpened = true;
    };
    source.onerror = () => {
      if (source !== this.source) return;
      this.hadGap = true;
      if (source.readyState === EventSource.CLOSED) {
        // The server answered with an error status (or not as a stream): find out which before retrying.
        this.source = null;
        this.refused = true;
        this.scheduleReconnect();
      } else {
        // The browser is retrying on its own (and will resend Last-Event-ID).
        this.failures += 1;
        this.setState(this.failures >= OFFLINE_AFTER_FAILURES ? "offline" : "reconnecting");
      }
    };
    const dispatch = (message) => {
      if (source !== this.source) return;
      this.lastHeard = Date.now();
      if (message.lastEventId) this.lastEventId = message.lastEventId;
      let envelope;
      try { envelope = JSON.parse(message.data); } catch { return; }
      if (!envelope || typeof envelope !== "object") return;
      this.handlers.onEvent?.({ ...envelope, type: envelope.type || message.type, id: message.lastEventId });
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, dispatch);
    source.addEventListener("message", dispatch);
    source.addEventListener("stream.end", (message) => {
      if (source !== this.source) return;
      let info = {};
      try { info = JSON.parse(message.data) || {}; } catch { /* the end still counts */ }
      this.ended(info);
    });
    source.addEventListener("ping", () => {
      if (source !== this.source) return;
      this.heardPing = true;
      this.lastHeard = Date.now();
    });
  }

  teardown() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  scheduleReconnect() {
    if (this.state === "closed" || this.paused) return;
    clearTimeout(this.timer);
    const delay = Math.min(MAX_DELAY_MS, 1000 * 2 ** this.failures) * (0.8 + Math.random() * 0.4);
    this.failures += 1;
    this.setState(this.failures >= OFFLINE_AFTER_FAILURES ? "offline" : "reconnecting");
    this.timer = setTimeout(() => this.probeAndOpen(), delay);
  }

  async probeAndOpen() {
    if (this.state === "closed" || this.paused) return;
    if (this.handlers.check) {
      try {
        await this.handlers.check();
      } catch (err) {
        if (err instanceof ApiError && !err.retryable) {
          this.close();
          this.handlers.onFatal?.(err);
          return;
        }
        this.scheduleReconnect();
        return;
      }
    }
    if (this.refused) {
      const err = await this.probe();
      if (this.state === "closed" || this.paused) return;
      if (err && err.status === 410) {
        this.ended({ reason: "session-ended", detail: err.detail });
        return;
      }
      if (err && !err.retryable) {
        this.close();
        this.handlers.onFatal?.(err);
        return;
      }
      if (err) {
        this.scheduleReconnect();
        return;
      }
      this.refused = false;
    }
    this.open();
  }

  /** Why the stream was refused: an ApiError from a plain GET of it, or null when it opens now (the probe
   * is closed at once) or the network failed. */
  async probe() {
    const controller = new AbortController();
    try {
      const response = await fetch(this.url, {
        headers: { Accept: "text/event-stream" }, credentials: "same-origin", cache: "no-store",
        signal: controller.signal,
      });
      if (response.ok) return null;
      const body = await response.json().catch(() => null);
      return new ApiError(response.status, body?.error || `Http${response.status}`, body?.detail || "", body);
    } catch {
      return null;
    } finally {
      controller.abort();
    }
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.handlers.onState?.(state);
  }
}

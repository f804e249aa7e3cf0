// The session's Server-Sent Events stream, with a visible connection state and catch-up after a drop.
//
// The browser's EventSource reconnects by itself after a dropped connection and resends Last-Event-ID, so
// the server replays what was missed. When it gives up (the stream answered with an error status, or the
// network failed hard) this wrapper opens a new EventSource with back-off, passing the last id as the
// `lastEventId` query parameter. Either way `onReconnected` runs after a gap so the page can also reload
// the current state: catch-up does not depend on the server's replay window.

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
   *   and is passed to onFatal(err) (the session was deleted or this phone was disconnected).
   */
  constructor(url, { onEvent, onState, onReconnected, check, onFatal } = {}) {
    this.url = url;
    this.handlers = { onEvent, onState, onReconnected, check, onFatal };
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
        this.source = null;
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
    this.open();
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.handlers.onState?.(state);
  }
}

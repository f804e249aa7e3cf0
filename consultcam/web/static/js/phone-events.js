// The phone's side of the session's event stream (events.js keeps the stream itself alive): images added or
// deleted elsewhere (they count against the session's cap), consent recorded on the desktop, commit progress,
// and the endings: committed, ended or expired, this phone signed out, "Not this patient?" confirmed on the
// desktop, or the phone paired elsewhere. After a gap in the stream, or an error that says the session
// changed, the phone catches up by asking for the session.

import { ApiError, api } from "./api.js";
import { consentNeeded } from "./consent.js";
import { announce } from "./dom.js";
import { EventStream } from "./events.js";
import { revocationEnding } from "./phone-model.js";

/**
 * @param {{state: object, phoneCommit: import("./phone-commit.js").PhoneCommit, render(): void,
 *   showScreen(name: string): void, finish(kind: string, reason?: string): void}} parts
 *   finish: end the session on this phone with one of phone-endings.js's kinds
 * @returns {{startEvents(): void, refreshSession(): Promise<void>}}
 */
export function createEventHandling({ state, phoneCommit, render, showScreen, finish }) {
  function startEvents() {
    const sessionId = state.session.id;
    state.events = new EventStream(api.eventsUrl(sessionId), {
      onEvent: handleEvent,
      onReconnected: () => refreshSession(),
      check: () => api.getSession(sessionId),
      onFatal: () => finish("revoked"),
    });
    state.events.start();
    window.__consultcam.events = state.events;
  }

  /** Catch up with the server (after a gap, or an error that says the session changed). */
  async function refreshSession() {
    if (state.ended) return;
    try {
      const session = await api.getSession(state.session.id);
      state.serverImages = new Set((session.images || []).map((image) => image.id));
      state.session = { ...state.session, ...session };
      if (session.status === "committed") finish("committed");
      else if (session.status !== "open") finish("ended", session.status);
      else if (state.screen === "consent" && !consentNeeded(session, state.settings)) showScreen("capture");
      render();
    } catch (err) {
      if (err instanceof ApiError && [401, 403, 404].includes(err.status)) finish("revoked");
    }
  }

  /** One server event {type, data} (DESIGN.md, "HTTP API": event types). */
  function handleEvent(event) {
    const data = event.data || {};
    switch (event.type) {
      case "image.added":
      case "image.updated":
      case "image.analysed":
        if (data.image?.id) state.serverImages.add(data.image.id);
        break;
      case "image.deleted":
        state.serverImages.delete(data.imageId);
        break;
      case "consent.recorded":
        state.session.consent = data.consent || state.session.consent;
        if (state.screen === "consent" && state.session.consent) {
          showScreen(state.photos.length ? "review" : "capture");
          announce("Consent was recorded on the desktop.");
        }
        break;
      case "commit.progress":
        phoneCommit.progress(data);
        return;
      case "session.committed":
        finish("committed");
        return;
      case "session.expired":
        finish("ended", data.reason);
        return;
      case "phone.revoked": {
        const ending = revocationEnding(data, state.session);
        if (ending) finish(ending);
        return;
      }
      default:
        return;
    }
    render();
  }

  return { startEvents, refreshSession };
}

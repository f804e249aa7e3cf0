// The server's news on the desktop session page: each event from GET /api/sessions/{id}/events (see
// events.js for the stream itself) handed to the part of the page it concerns. Events that arrive before
// the first snapshot is shown are buffered by desktop-session.js and handled after it.

import { committed, endSession } from "./desktop-ending.js";
import { phonePaired, phoneRevoked } from "./desktop-phone.js";
import { photoChanged, photoDeleted } from "./desktop-photos.js";
import { renderStatus } from "./desktop-render.js";

/**
 * Handle one event.
 * @param {import("./desktop-session.js").DesktopPage} page  the session page
 * @param {{type: string, data?: object}} event  as events.js delivers it
 */
export function handleEvent(page, event) {
  const { commit, gallery, state } = page;
  const data = event.data || {};
  switch (event.type) {
    case "phone.paired":
      phonePaired(page, data.phone);
      break;
    case "phone.revoked":
      phoneRevoked(page, data.reason);
      break;
    case "consent.recorded":
      if (data.consent) page.consent.recorded(data.consent);
      break;
    case "image.added":
    case "image.updated":
    case "image.analysed":
      if (!data.image || state.ended) break;
      photoChanged(page, event.type, data.image);
      break;
    case "image.deleted":
      photoDeleted(page, data.imageId);
      break;
    case "commit.started":
      commit.started(data.total ?? gallery.size);
      commit.onProgress(0, data.total ?? gallery.size);
      renderStatus("committing");
      break;
    case "commit.progress":
      commit.onProgress(data.done ?? 0, data.total ?? gallery.size);
      break;
    case "session.committed":
      if (!commit.running) committed(page, data.results || [], { byPhone: commit.external });
      break;
    case "commit.failed":
      commit.failed(data.detail || data.error, { interrupted: Boolean(data.interrupted) });
      renderStatus("open");
      page.reload(); // the commit card shows how the last commit ended
      break;
    case "session.expired":
      endSession(page, data.reason === "cancelled" ? "cancelled" : "expired");
      break;
    default:
      break;
  }
}

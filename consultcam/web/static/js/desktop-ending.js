// How a session ends on the desktop page: committed (the result card), cancelled by the clinician (after
// the confirmation dialog), expired, or not loadable at all (not found, or an error). An ended page shows
// only the outcome; a committed one keeps its photos on screen, read-only.

import { ApiError, api } from "./api.js";
import { renderCommitResult } from "./commit-dialog.js";
import { renderCount, renderStatus } from "./desktop-render.js";
import { $, announce, setText, show } from "./dom.js";
import { summarise } from "./metadata-chips.js";

const ENDINGS = {
  committed: ["Saved to the record", "The photos are in the patient's record and have been deleted from consultcam. The phone has been told."],
  cancelled: ["Session cancelled", "The photos were deleted and nothing was saved to the record."],
  expired: ["Session expired", "It was closed after a period with no activity. Its photos were deleted and nothing was saved to the record."],
};

/**
 * The commit finished: show each photo's result, then end the session.
 * @param {import("./desktop-session.js").DesktopPage} page  the session page
 * @param {object[]} results  per-photo results from the commit (event `session.committed` or the dialog)
 * @param {{byPhone?: boolean}} [how]  `byPhone`: the commit was started on the phone
 */
export function committed(page, results, { byPhone = false } = {}) {
  const { gallery, state } = page;
  const resultPanel = $("#commit-result");
  if (state.ended === "committed" && !resultPanel.hidden) return;
  const positions = new Map(gallery.images().map((image, index) => [image.id, { index: index + 1, image }]));
  renderCommitResult(resultPanel, results, (imageId) => {
    const known = positions.get(imageId);
    if (!known) return "Photo";
    // Named by its label, else by where it was taken ("Photo 2 · Left hand").
    const name = known.image.metadata?.label || summarise(known.image.metadata, gallery.terminology, known.image.words);
    return `Photo ${known.index}${name ? ` · ${name}` : ""}`;
  }, state.session?.patient?.name, (imageId) => positions.get(imageId)?.index ?? Number.MAX_SAFE_INTEGER, { byPhone });
  endSession(page, "committed");
}

/**
 * Close everything that could change the session and say how it ended.
 * @param {import("./desktop-session.js").DesktopPage} page  the session page
 * @param {string} status  "committed", "cancelled" or "expired"
 */
export function endSession(page, status) {
  const { state } = page;
  if (state.ended && state.ended !== "open") {
    renderStatus(status === "committed" ? "committed" : state.ended);
    return;
  }
  state.ended = status;
  page.commit.close();
  page.consent.close();
  state.viewer?.close();
  page.events.close();
  page.qr.disable();
  renderStatus(status);
  page.gallery.setReadOnly(status);
  page.panel.setReadOnly();
  show($("#wrong-patient"), false);
  show($("#paired-elsewhere"), false);
  const copy = ENDINGS[status] || ["Session ended", "This session is no longer open."];
  setText($("#ended-title"), copy[0]);
  setText($("#ended-text"), copy[1]);
  show($("#ended-card"), true);
  for (const selector of [".commit-card", ".phone-card", ".consent-card", "#live", "#inspector", "#upload-tray"]) show($(selector), false);
  $("#main").dataset.phase = "ended";
  if (status !== "committed") {
    page.gallery.clear();
    $("#main").dataset.ended = "true"; // nothing left to show but the outcome
  }
  renderCount(page);
  announce(copy[0]);
}

/** The session could not be loaded (or the stream gave up): say so plainly; a lost sign-in reloads the page. */
export function fatal(page, err) {
  if (err instanceof ApiError && err.status === 401) {
    window.location.reload(); // the server shows the sign-in page
    return;
  }
  page.events.close();
  page.markLoaded();
  const notFound = err instanceof ApiError && (err.status === 404 || err.status === 403);
  setText($("#pb-name"), notFound ? "Session not found" : "Could not load the session");
  show($(".pb-facts"), false);
  show($("#session-status"), false);
  page.state.ended = "error";
  page.qr.disable();
  for (const selector of [".phone-card", ".commit-card", ".consent-card", "#gallery-empty", "#live", "#inspector"]) show($(selector), false);
  $("#main").dataset.ended = "true";
  $("#main").dataset.phase = "ended";
  setText($("#ended-title"), notFound ? "Session not found" : "Could not load the session");
  setText($("#ended-text"), notFound
    ? "It may have been committed, cancelled or expired. Start a new session for this patient."
    : (err?.detail || "Reload the page to try again."));
  show($("#ended-card"), true);
  renderStatus("error");
}

/** "Cancel session": confirmed in a dialog, then the photos are deleted on the server and the page ends. */
export function confirmCancel(page) {
  const dialog = $("#cancel-dialog");
  dialog.returnValue = "";
  show($("#cancel-error"), false);
  dialog.showModal();
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "cancel") return;
    try {
      await api.cancelSession(page.sessionId);
      endSession(page, "cancelled");
    } catch (err) {
      announce(err?.detail || "The session could not be cancelled.");
      page.reload();
    }
  }, { once: true });
}

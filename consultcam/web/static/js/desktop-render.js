// The desktop session page's display of its state: the patient banner, the session's status pill, the
// live-updates indicator, the photo count and its meter, the capacity warning, the commit button and its
// readiness line, the download link, and the selection's "Select all" box. Each function reads the page
// (desktop-session.js) and writes the DOM; none changes state.

import { api } from "./api.js";
import { $, announce, setText, show } from "./dom.js";
import { formatBirthDateWithAge, plural } from "./format.js";
import { listFields, metadataGaps } from "./metadata-chips.js";

const STATUS_WORDS = { open: "Open", committing: "Committing…", committed: "Committed", cancelled: "Cancelled", expired: "Expired" };
const LIVE_WORDS = {
  connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…",
  offline: "Offline · retrying", closed: "Not live",
};

/** The patient banner and the window title, from GET /api/sessions/{id}. */
export function renderBanner(session) {
  const patient = session.patient || {};
  setText($("#pb-name"), patient.name || "Unnamed patient");
  setText($("#pb-nhi"), patient.nhi || "not recorded");
  setText($("#pb-dob"), patient.birthDate ? formatBirthDateWithAge(patient.birthDate) : "not recorded");
  renderEncounter($("#pb-encounter"), session);
  document.title = `${patient.name || "Photo session"} · consultcam`;
}

/** The session's encounter: its id when it names an Encounter of the record, else (a launch's made-up day
 * key, which would mean nothing to the GP) "Today's consultation", with the key kept as the tooltip.
 * @param {HTMLElement} element  where to write it
 * @param {object} session  the session from the API */
export function renderEncounter(element, session) {
  const inRecord = session.encounterInRecord !== false;
  setText(element, inRecord ? session.encounterId || "" : "Today's consultation");
  element.classList.toggle("mono", inRecord);
  element.title = inRecord ? "" : session.encounterId || "";
}

/** An open session whose last commit did not finish says so in the commit card (issue 10): interrupted
 * (consultcam stopped mid-commit: not known what reached the record) or failed, in the server's words.
 * @param {object} session  the session from the API
 * @param {string} commitHint  the card's usual hint (the template's text) */
export function renderLastCommit(session, commitHint) {
  const hint = $("#commit-hint");
  const last = session.status === "open" ? session.lastCommit : null;
  const unfinished = ["interrupted", "failed"].includes(last?.status) ? last.status : "";
  hint.dataset.lastCommit = unfinished;
  hint.classList.toggle("notice", Boolean(unfinished));
  hint.classList.toggle("notice-warn", Boolean(unfinished));
  setText(hint, unfinished ? last.detail : commitHint);
}

/** The status pill: a session status ("open" … "expired"), or "error" when the page could not load it. */
export function renderStatus(status) {
  const pill = $("#session-status");
  pill.dataset.status = status;
  setText(pill, STATUS_WORDS[status] || status);
}

/** The live indicator for the event stream's state (events.js: connecting, live, reconnecting, offline, closed). */
export function renderLive(liveState) {
  const live = $("#live");
  live.dataset.state = liveState;
  setText(live.querySelector(".live-text"), LIVE_WORDS[liveState] || liveState);
  live.title = liveState === "live" ? "New photos appear as soon as they are uploaded" : "Live updates are interrupted";
  show($("#live-refresh"), liveState === "offline");
  if (liveState === "offline") announce("Live updates are interrupted. Retrying.");
}

/** Everything that depends on how many photos there are (and whether the session has ended). */
export function renderCount(page) {
  const { config, gallery, sessionId, state } = page;
  const count = gallery.size;
  setText($("#photo-total"), String(count));
  setText($("#photo-total-label"), count === 1 ? "photo" : "photos");
  setText($("#gallery-summary"), count ? plural(count, "photo") : "");
  $("#photo-meter").style.width = `${Math.min(100, (count / config.maxImages) * 100)}%`;
  $("#photo-meter").dataset.level = count >= config.maxImages ? "full" : count >= config.warnImages ? "warn" : "ok";
  show($("#gallery-empty"), count === 0 && !state.ended);
  const warning = $("#capacity-warning");
  if (count >= config.maxImages) {
    setText(warning, `This session is full (${config.maxImages} photos). Commit or delete photos before taking more.`);
  } else if (count >= config.warnImages) {
    setText(warning, `${count} photos: the session holds at most ${config.maxImages}. Consider committing these first.`);
  }
  show(warning, count >= config.warnImages && !state.ended);
  const commitBtn = $("#commit-btn");
  commitBtn.disabled = count === 0 || Boolean(state.ended);
  setText(commitBtn, count ? `Commit ${plural(count, "photo")}` : "Commit photos");
  renderReadiness(page);
  const download = $("#download-all");
  if (count && !state.ended) {
    download.href = api.sessionDownloadUrl(sessionId);
    download.removeAttribute("aria-disabled");
  } else {
    download.removeAttribute("href");
    download.setAttribute("aria-disabled", "true");
  }
  show($("#gallery-tools"), !state.ended);
  $("#select-all").disabled = count === 0;
  renderSelection(page);
}

/** Say in the commit card whether every photo has what commit requires. */
export function renderReadiness(page) {
  const line = $("#commit-ready");
  const images = page.gallery.images();
  const required = page.required();
  const { gaps, fields } = metadataGaps(images, required);
  if (!images.length || page.state.ended) {
    line.replaceChildren();
    delete line.dataset.tone;
    return;
  }
  if (gaps.length) {
    line.dataset.tone = "warn";
    line.replaceChildren(`${gaps.length === 1 ? "1 photo needs" : `${gaps.length} photos need`} a ${listFields(fields)}.`);
  } else {
    line.dataset.tone = "ok";
    line.replaceChildren(required.length ? `Every photo has its ${listFields(required)}.` : "Ready to commit.");
  }
}

/** The photos the details panel is about: the selection, else the current photo, else none. */
export function targets(gallery) {
  const selection = gallery.selection();
  if (selection.length) return selection;
  return gallery.current ? [gallery.current] : [];
}

/** The "Select all" box (checked, mixed or clear), the details panel and the readiness line. */
export function renderSelection(page) {
  const { gallery, panel } = page;
  const count = gallery.selected.size;
  const all = $("#select-all");
  all.checked = count > 0 && count === gallery.size;
  all.indeterminate = count > 0 && count < gallery.size;
  setText($("#select-all-text"), count ? `${count} selected` : "Select all");
  $("#select-all").setAttribute("aria-label", count ? `${count} of ${gallery.size} selected. Select all` : "Select all photos");
  panel.show(targets(gallery));
  renderReadiness(page);
}

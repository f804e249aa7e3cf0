// The phone page's standing parts, drawn from the state after every change: the photo count and Review
// button on the camera screen, the last thumbnail, the retake chip, the capacity notes, the review grid, the
// consent line, the action bar with its upload button and required-details hint, the overall progress strip
// and the offline strip. Which screen shows is phone-screens.js; the words and numbers come from
// phone-model.js.

import { describeConsent } from "./consent.js";
import { $, setText, show } from "./dom.js";
import { plural, sentenceCase } from "./format.js";
import { listFields, metadataGaps } from "./metadata-chips.js";
import { capacityNote, editablePhotos, overallProgress, pendingPhotos, remainingCapacity, uploadButtonText } from "./phone-model.js";

/** The elements of mobile.html that more than one part of the page uses. */
export function findElements() {
  return {
    banner: $("#patient-banner"),
    wrongPatient: $("#wrong-patient"),
    pbState: $("#pb-state"),
    netNote: $("#net-note"),
    viewfinder: $("#viewfinder"),
    shutter: $("#shutter"),
    filesBtn: $("#files-btn"),
    fileInput: $("#file-input"),
    reviewBtn: $("#review-btn"),
    reviewBtnText: $("#review-btn-text"),
    lastThumb: $("#last-thumb"),
    photoCount: $("#photo-count"),
    retakeChip: $("#retake-chip"),
    captureCapacity: $("#capture-capacity"),
    reviewCapacity: $("#review-capacity"),
    reviewEmpty: $("#review-empty"),
    restoredNote: $("#restored-note"),
    actionBar: $("#action-bar"),
    uploadAll: $("#upload-all"),
    uploadAllText: $("#upload-all-text"),
    requiredHint: $("#required-hint"),
    overall: $("#overall"),
    overallText: $("#overall-text"),
    overallPct: $("#overall-pct"),
    overallProgress: $("#overall-progress"),
  };
}

/**
 * @param {{state: object, els: object, camera: import("./camera.js").Camera,
 *   grid: import("./review.js").ReviewGrid}} parts
 * @returns {{render(): void, renderOverall(): void, renderNet(): void}}
 *   render: everything below; renderOverall: only the progress strip (cheap, for upload progress);
 *   renderNet: only the offline strip
 */
export function createRenderer({ state, els, camera, grid }) {
  function render() {
    renderCapture();
    const remaining = remainingCapacity(state);
    els.shutter.disabled = !camera.active || state.ended || (remaining <= 0 && !state.retake);
    els.filesBtn.disabled = state.ended || (remaining <= 0 && !state.retake);
    const note = capacityNote(state);
    for (const el of [els.captureCapacity, els.reviewCapacity]) {
      setText(el, note?.text || "");
      show(el, Boolean(note));
      if (el) el.dataset.level = note?.level || "";
    }

    grid.sync(state.photos); // also drops the cards (and their blob: images) of photos sent or deleted
    if (state.screen === "review") {
      show(els.reviewEmpty, !state.photos.length);
      setText($("#review-title"), state.photos.length ? `Review ${plural(state.photos.length, "photo")}` : "Review");
    }
    const consent = describeConsent(state.session?.consent);
    for (const [line, text] of [["#consent-line", "#consent-line-text"], ["#done-consent", "#done-consent-text"]]) {
      show($(line), Boolean(consent));
      setText($(text), consent);
    }
    show(els.wrongPatient, !state.ended);
    show(els.pbState, state.ended);
    renderActionBar();
    renderOverall();
    renderNet();
  }

  /** The camera screen's count, Review button, last thumbnail and retake chip. */
  function renderCapture() {
    const count = pendingPhotos(state).length;
    setText(els.photoCount, plural(count, "photo"));
    els.viewfinder.dataset.count = String(count);
    els.reviewBtn.disabled = count === 0 && state.screen === "capture";
    setText(els.reviewBtnText, count ? `Review ${count}` : "Review");
    els.reviewBtn.setAttribute("aria-label", count ? `Review ${plural(count, "photo")}` : "Review photos");
    const last = [...state.photos].reverse().find((p) => p.url);
    if (last) els.lastThumb.src = last.url;
    else els.lastThumb.removeAttribute("src");
    show(els.lastThumb, Boolean(last));
    const retakeOf = state.retake && state.photos.find((p) => p.id === state.retake.id);
    show(els.retakeChip, state.screen === "capture" && Boolean(retakeOf));
    if (retakeOf) setText(els.retakeChip, `Retaking photo ${state.photos.indexOf(retakeOf) + 1}`);
  }

  /** The bar with the upload button, and the hint naming required details still missing. */
  function renderActionBar() {
    // On the camera screen the bar is always there, so the preview does not change size at the first photo.
    const barVisible = !state.ended && (state.screen === "capture" || (state.screen === "review" && state.photos.length > 0));
    show(els.actionBar, barVisible);
    document.body.classList.toggle("has-action-bar", barVisible);
    els.uploadAll.disabled = state.uploading || editablePhotos(state).length === 0;
    setText(els.uploadAllText, uploadButtonText(state));
    const { gaps, fields } = metadataGaps(editablePhotos(state), state.settings.requiredMetadata);
    show(els.requiredHint, state.screen === "review" && gaps.length > 0);
    setText(els.requiredHint, gaps.length
      ? `${sentenceCase(listFields(fields))} not set on ${plural(gaps.length, "photo")}: tap Details, or the clinician can add ${fields.length > 1 ? "them" : "it"} on the desktop.`
      : "");
  }

  function renderOverall() {
    const progress = overallProgress(state);
    show(els.overall, progress.active);
    if (!progress.active) return;
    els.overall.dataset.waiting = String(progress.waiting);
    setText(els.overallText, progress.text);
    setText(els.overallPct, `${Math.round(progress.fraction * 100)}%`);
    els.overallProgress.value = progress.fraction;
  }

  /** The offline strip under the banner: shown whenever the browser says the network is gone. */
  function renderNet() {
    show(els.netNote, !navigator.onLine && Boolean(state.session) && !state.ended);
  }

  return { render, renderOverall, renderNet };
}

// The image viewer's words about the photo shown: the title ("Photo 2 of 5"), the subtitle (label, body
// site, side), the canvas's accessible description, and the caption's facts (body site, laterality, view,
// when taken, size, source, notes), quality and edit badges, and AI description.

import { h, icon } from "./dom.js";
import { describeEdits, finalSize, hasEdits } from "./edit-geometry.js";
import { describeQualityWarning, formatTime } from "./format.js";

/**
 * Write what the viewer says about `image`, photo `position` (1-based) of `total`.
 * @param {object} ui  the viewer's elements (viewer-dialog.js): title, subtitle, canvas, facts, badges, ai
 * @param {object} image  an API image
 * @param {{position: number, total: number, readOnly: boolean}} where  `readOnly`: no "Add to notes"
 */
export function renderDetails(ui, image, { position, total, readOnly }) {
  const metadata = image.metadata || {};
  ui.title.textContent = `Photo ${position} of ${total}`;
  const words = image.words || {}; // the server's words for the metadata (consultcam/terminology/words.py)
  const side = metadata.laterality !== "not-applicable" ? words.laterality || "" : "";
  const site = [metadata.bodySite?.display, side.toLowerCase()].filter(Boolean).join(", ");
  ui.subtitle.textContent = [metadata.label, site].filter(Boolean).join(" · ") || "No label or body site yet";
  ui.subtitle.classList.toggle("is-empty", !metadata.label && !site);
  const taken = image.capturedAt || image.createdAt;
  ui.canvas.setAttribute("aria-label", [
    `Photo ${position}`, metadata.label, site, taken ? `taken ${formatTime(taken)}` : "", describeEdits(image.edits),
  ].filter(Boolean).join(", "));

  const facts = [
    ["Body site", metadata.bodySite?.display],
    ["Laterality", words.laterality],
    ["View", words.view],
    ["Taken", taken ? formatTaken(taken) : ""],
    ["Size", describeSize(image)],
    ["From", image.source === "desktop" ? "This computer" : image.source ? "Phone" : ""],
  ].filter(([, value]) => value);
  ui.facts.replaceChildren(...facts.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
  if (metadata.notes) ui.facts.append(h("div", { class: "vw-notes" }, h("dt", {}, "Notes"), h("dd", {}, metadata.notes)));

  const warnings = [...new Set((image.quality?.warnings || []).map(describeQualityWarning).filter(Boolean))];
  const badges = warnings.map((text) => h("li", { class: "badge badge-warn" }, icon("alert"), text));
  const edited = describeEdits(image.edits);
  if (edited) badges.push(h("li", { class: "badge badge-edited" }, icon("pencil"), `Edited: ${edited.toLowerCase()}`));
  ui.badges.replaceChildren(...badges);
  ui.badges.hidden = badges.length === 0;
  ui.ai.update(image, { canAdd: !readOnly });
}

/** "1600 × 1067 px", or with edits "854 × 1200 px (original 1600 × 1067)". */
function describeSize(image) {
  if (!image.width || !image.height) return "";
  const original = `${image.width} × ${image.height}`;
  const edits = image.edits || {};
  if (!hasEdits(edits)) return `${original} px`;
  const size = finalSize({ width: image.width, height: image.height }, edits.rotation || 0, edits.crop || null);
  return size.width === image.width && size.height === image.height
    ? `${original} px`
    : `${size.width} × ${size.height} px (original ${original})`;
}

function formatTaken(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const day = new Intl.DateTimeFormat("en-NZ", { day: "numeric", month: "short", year: "numeric" }).format(date);
  return `${day}, ${formatTime(iso)}`;
}

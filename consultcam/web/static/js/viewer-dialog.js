// The image viewer's markup: a native <dialog> with a bar (title, zoom, Edit, Download, Close), the stage
// with its canvas and previous/next buttons, an edit area for image-editor.js, and the caption (facts,
// badges, AI description, keyboard help). Only elements here; what they do is image-viewer.js.

import { AiDescription } from "./ai-description.js";
import { h, icon } from "./dom.js";

/**
 * Build the viewer's elements (not yet in the document).
 * @param {{readOnly: boolean, zoomIn: () => void, zoomOut: () => void, fit: () => void, edit: () => void,
 *   close: () => void, retry: () => void, previous: () => void, next: () => void,
 *   addDescription: (image: object) => void}} actions  what the controls do
 * @returns {object} the elements by name: dialog, title, subtitle, stage, canvas, loading, failure,
 *   zoomLevel, zoomInButton, zoomOutButton, editButton, downloadLink, viewControls, prevButton,
 *   nextButton, viewArea, editArea, facts, badges, ai (an AiDescription), caption, announcer
 */
export function buildViewer(actions) {
  const ui = {};
  const button = (label, iconName, onclick, extra = {}) => h("button", {
    type: "button", class: "vw-btn", "aria-label": label, title: label, onclick, ...extra,
  }, icon(iconName));
  ui.title = h("h2", { class: "vw-title", id: "vw-title" });
  ui.subtitle = h("p", { class: "vw-subtitle" });
  ui.zoomOutButton = button("Zoom out (−)", "zoom-out", actions.zoomOut, { "aria-keyshortcuts": "-" });
  ui.zoomInButton = button("Zoom in (+)", "zoom-in", actions.zoomIn, { "aria-keyshortcuts": "+" });
  ui.zoomLevel = h("button", {
    type: "button", class: "vw-zoom-level", title: "Fit to screen (0)", "aria-keyshortcuts": "0",
    onclick: actions.fit,
  }, "Fit");
  ui.editButton = h("button", {
    type: "button", class: "btn btn-on-dark", dataset: { testid: "viewer-edit" }, "aria-keyshortcuts": "E",
    onclick: actions.edit,
  }, icon("pencil"), "Edit");
  ui.downloadLink = h("a", { class: "btn btn-on-dark", download: "" }, icon("download"), "Download");
  const closeButton = h("button", {
    type: "button", class: "vw-btn vw-close", "aria-label": "Close viewer", title: "Close (Esc)",
    dataset: { testid: "viewer-close" }, onclick: actions.close,
  }, icon("x"));
  ui.viewControls = h("div", { class: "vw-controls" },
    h("div", { class: "vw-zoom", role: "group", "aria-label": "Zoom" }, ui.zoomOutButton, ui.zoomLevel, ui.zoomInButton),
    ui.editButton, ui.downloadLink);
  const bar = h("header", { class: "vw-bar" },
    h("div", { class: "vw-heading" }, ui.title, ui.subtitle),
    ui.viewControls, closeButton);

  ui.canvas = h("canvas", { class: "vw-canvas", role: "img", dataset: { testid: "viewer-canvas" } });
  ui.loading = h("div", { class: "vw-loading", "aria-hidden": "true" }, h("span", { class: "spinner" }));
  ui.failure = h("div", { class: "vw-failure", role: "alert", hidden: true },
    icon("alert", "icon icon-lg"),
    h("p", {}, "This photo could not be loaded."),
    h("button", { type: "button", class: "btn btn-on-dark btn-sm", onclick: actions.retry }, "Try again"));
  ui.stage = h("div", {
    class: "vw-stage", tabindex: "0", role: "region", "aria-describedby": "vw-keys", dataset: { testid: "viewer-stage" },
  }, ui.canvas, ui.loading, ui.failure);
  ui.prevButton = h("button", {
    type: "button", class: "vw-nav vw-prev", onclick: actions.previous, dataset: { testid: "viewer-prev" },
  }, icon("chevron-left"));
  ui.nextButton = h("button", {
    type: "button", class: "vw-nav vw-next", onclick: actions.next, dataset: { testid: "viewer-next" },
  }, icon("chevron-right"));
  ui.viewArea = h("div", { class: "vw-view" }, ui.stage, ui.prevButton, ui.nextButton);
  ui.editArea = h("div", { class: "vw-edit", hidden: true });

  ui.facts = h("dl", { class: "vw-facts" });
  ui.badges = h("ul", { class: "vw-badges" });
  ui.ai = new AiDescription({
    idPrefix: "vw", buttonClass: "btn btn-on-dark btn-sm", onAdd: actions.addDescription,
  });
  ui.caption = h("footer", { class: "vw-caption" },
    h("div", { class: "vw-caption-main" }, ui.facts, ui.badges, ui.ai.element),
    h("p", { class: "vw-keys", id: "vw-keys" },
      kbd("←"), " ", kbd("→"), " photos · ", kbd("+"), " ", kbd("−"), " zoom · ", kbd("0"), " fit",
      actions.readOnly ? "" : [" · ", kbd("E"), " edit"], " · ", kbd("Esc"), " close",
      h("span", { class: "visually-hidden" }, ". When zoomed in, the arrow keys move the photo.")));
  ui.announcer = h("p", { class: "visually-hidden", "aria-live": "polite" });

  ui.dialog = h("dialog", {
    class: "viewer", "aria-labelledby": "vw-title", dataset: { testid: "image-viewer", mode: "view" },
  }, h("div", { class: "vw-shell" }, bar, h("div", { class: "vw-main" }, ui.viewArea, ui.editArea), ui.caption, ui.announcer));
  return ui;
}

function kbd(text) {
  return h("kbd", {}, text);
}

// The image editor's controls: the toolbar (tools, rotate, undo, clear, cancel, save), the picture's frame
// with its crop handles, the text-label form, and the side panel (hint, crop fields, the list of
// annotations). Built once by buildEditorParts; renderPanel brings the panel up to date after a change.

import { h, icon } from "./dom.js";
import { MAX_TEXT_LENGTH } from "./edit-geometry.js";

export const TOOLS = [
  { id: "select", label: "Select", key: "v", icon: "cursor", hint: "Click a mark to select it; drag to move it. Delete removes it." },
  { id: "arrow", label: "Arrow", key: "a", icon: "annot-arrow", hint: "Drag from the tail to the point. A click places a short arrow pointing at the spot." },
  { id: "circle", label: "Circle", key: "o", icon: "annot-circle", hint: "Drag a box around the area to ring it. A click places a small circle." },
  { id: "text", label: "Text", key: "t", icon: "annot-text", hint: "Click where the label should start, then type the words." },
  { id: "crop", label: "Crop", key: "c", icon: "crop", hint: "Drag the handles or the box; drag outside it to draw a new one. Arrow keys move it, Shift+arrow keys resize it." },
];
/** What the list and the announcements call each kind of annotation. */
export const NAMES = { arrow: "Arrow", circle: "Circle", text: "Text" };
export const CROP_KEYS = ["x", "y", "width", "height"];

/**
 * The editor's elements, wired to `on` (the editor): `{root, toolButtons: Map id → button, undoButton,
 * clearButton, saveButton, canvas, cropBox, frame, textInput, textEntry, stage, hint, cropInputs: {x, y,
 * width, height}, cropFields, list, listEmpty, count, note, error}`.
 */
export function buildEditorParts(on) {
  const parts = { toolButtons: new Map(), cropInputs: {} };
  const button = (label, title, iconName, onclick, extra = {}) => h("button", {
    type: "button", class: "ed-btn", title, onclick, ...extra,
  }, icon(iconName), h("span", { class: "ed-btn-label" }, label));
  const toolGroup = h("div", { class: "ed-group", role: "group", "aria-label": "Tool" },
    TOOLS.map((tool) => {
      const key = tool.key.toUpperCase();
      const toolButton = button(tool.label, `${tool.label} (${key})`, tool.icon, () => on.setTool(tool.id), {
        "aria-pressed": "false", "aria-keyshortcuts": key, dataset: { tool: tool.id },
      });
      parts.toolButtons.set(tool.id, toolButton);
      return toolButton;
    }));
  const rotateLeft = button("Rotate left", "Rotate left ([)", "rotate-ccw", () => on.rotate(-90), { "aria-keyshortcuts": "[" });
  const rotateRight = button("Rotate right", "Rotate right (])", "rotate-cw", () => on.rotate(90), { "aria-keyshortcuts": "]" });
  parts.undoButton = button("Undo", "Undo (Ctrl+Z)", "undo", () => on.undo(), {
    "aria-keyshortcuts": "Control+Z Meta+Z", disabled: true,
  });
  parts.clearButton = button("Clear edits", "Remove every edit: the original photo", "x-circle", () => on.clearAll());
  const cancelButton = h("button", { type: "button", class: "btn btn-on-dark", onclick: () => on.cancel() }, "Cancel");
  parts.saveButton = h("button", {
    type: "button", class: "btn btn-primary", dataset: { testid: "editor-save" }, onclick: () => on.save(),
  }, icon("check"), "Save edits");
  const toolbar = h("div", { class: "ed-toolbar" },
    toolGroup,
    h("div", { class: "ed-group", role: "group", "aria-label": "Rotate" }, rotateLeft, rotateRight),
    h("div", { class: "ed-group", role: "group", "aria-label": "History" }, parts.undoButton, parts.clearButton),
    h("div", { class: "ed-actions" }, cancelButton, parts.saveButton));

  const hintId = `ed-hint-${Math.random().toString(36).slice(2, 8)}`;
  parts.canvas = h("canvas", { class: "ed-canvas", "aria-hidden": "true" });
  parts.cropBox = h("div", { class: "ed-crop", hidden: true, "aria-hidden": "true" },
    ["nw", "n", "ne", "e", "se", "s", "sw", "w"].map((edge) => h("span", { class: `ed-handle ed-handle-${edge}`, dataset: { edge } })));
  parts.frame = h("div", {
    class: "ed-frame", tabindex: "0", role: "application", "aria-roledescription": "drawing area",
    "aria-describedby": hintId, dataset: { testid: "editor-canvas" },
  }, parts.canvas, parts.cropBox);
  parts.textInput = h("input", {
    type: "text", id: `${hintId}-text`, maxlength: String(MAX_TEXT_LENGTH), autocomplete: "off", spellcheck: "true",
    placeholder: "e.g. Lesion 6 mm",
  });
  parts.textEntry = h("form", { class: "ed-text-entry", hidden: true, "aria-label": "Text label" },
    h("label", { for: parts.textInput.id }, "Label text"),
    parts.textInput,
    h("div", { class: "ed-text-actions" },
      h("button", { type: "button", class: "btn btn-quiet btn-sm", onclick: () => on.closeTextEntry() }, "Cancel"),
      h("button", { type: "submit", class: "btn btn-primary btn-sm" }, "Add label")));
  parts.textEntry.addEventListener("submit", (event) => { event.preventDefault(); on.commitText(); });
  parts.stage = h("div", { class: "ed-stage" }, parts.frame, parts.textEntry);

  parts.hint = h("p", { class: "ed-hint", id: hintId });
  const cropField = (key, label) => {
    const input = h("input", {
      type: "number", min: "0", max: "100", step: "0.5", inputmode: "decimal", id: `${hintId}-crop-${key}`,
    });
    input.addEventListener("change", () => on.cropFromInputs());
    parts.cropInputs[key] = input;
    return h("div", { class: "ed-field" }, h("label", { for: input.id }, label), input);
  };
  parts.cropFields = h("fieldset", { class: "ed-crop-fields", hidden: true },
    h("legend", {}, "Crop, as % of the rotated photo"),
    h("div", { class: "ed-field-grid" },
      cropField("x", "Left"), cropField("y", "Top"), cropField("width", "Width"), cropField("height", "Height")),
    h("button", { type: "button", class: "btn btn-on-dark btn-sm", onclick: () => on.resetCrop() }, "Reset crop"));
  parts.list = h("ol", { class: "ed-list", "aria-label": "Annotations" });
  parts.listEmpty = h("p", { class: "ed-empty" }, "No annotations yet.");
  parts.count = h("span", { class: "ed-count" });
  parts.note = h("p", { class: "ed-note", role: "status" });
  parts.error = h("p", { class: "notice notice-error ed-error", role: "alert", hidden: true, dataset: { testid: "editor-error" } });
  const panel = h("aside", { class: "ed-panel", "aria-label": "Edit details" },
    parts.error,
    parts.hint,
    parts.cropFields,
    h("h3", { class: "ed-panel-title" }, "Annotations ", parts.count),
    parts.list, parts.listEmpty, parts.note);

  parts.root = h("div", { class: "editor", dataset: { testid: "image-editor" } },
    toolbar, h("div", { class: "ed-body" }, parts.stage, panel));
  return parts;
}

/**
 * Bring the panel up to date with `model` (an EditModel): the annotation list (choose and delete buttons
 * wired to `on.choose(id)` and `on.deleteAnnotation(id)`), the note about marks the crop leaves out, the
 * Undo and Clear buttons, and `data-dirty` on the editor.
 */
export function renderPanel(parts, model, selected, on) {
  const { annotations } = model;
  parts.count.textContent = annotations.length ? `(${annotations.length})` : "";
  parts.list.replaceChildren(...annotations.map((item, index) => {
    const name = `${index + 1}. ${NAMES[item.type]}${item.type === "text" ? `: “${item.text}”` : ""}`;
    const choose = h("button", {
      type: "button", class: "ed-item", "aria-pressed": String(selected === item.id), onclick: () => on.choose(item.id),
    }, icon(`annot-${item.type}`), h("span", {}, name));
    const remove = h("button", {
      type: "button", class: "ed-item-delete", "aria-label": `Delete annotation ${index + 1}`, title: "Delete",
      onclick: () => on.deleteAnnotation(item.id),
    }, icon("trash"));
    return h("li", { dataset: { annotationId: item.id, type: item.type } }, choose, remove);
  }));
  parts.list.hidden = annotations.length === 0;
  parts.listEmpty.hidden = annotations.length > 0;
  const { dropped } = model;
  parts.note.textContent = dropped
    ? `${dropped} ${dropped === 1 ? "annotation lies" : "annotations lie"} outside the crop and will not be saved.`
    : "";
  parts.undoButton.disabled = !model.canUndo;
  parts.clearButton.disabled = model.isEmpty;
  parts.root.dataset.dirty = String(model.dirty);
}

/** Show the crop (rotated-frame fractions) in the crop fields, in %, except in the field being typed in. */
export function renderCropInputs(parts, rect) {
  for (const key of CROP_KEYS) {
    const input = parts.cropInputs[key];
    if (document.activeElement !== input) input.value = String(Math.round(rect[key] * 1000) / 10);
  }
}

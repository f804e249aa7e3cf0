// The image viewer's keyboard: Tab stays in the dialog; Escape leaves edit mode or closes; + − 0 zoom and
// fit; ← → step through the photos, or pan when zoomed in (↑ ↓ too); Home and End go to the first and last
// photo; E edits. Keys typed into a field, and any with Ctrl, ⌘ or Alt, are left alone.

import { trapTab } from "./image-editor.js";

/**
 * Handle a keydown inside the viewer's dialog.
 * @param {KeyboardEvent} event
 * @param {{dialog: HTMLDialogElement, editor: object|null, readOnly: boolean, index: number, count: number,
 *   zoom: import("./viewer-zoom.js").ViewerZoom, step(delta: number): void, startEdit(): void,
 *   close(): void}} viewer  the viewer's state and actions
 */
export function handleViewerKey(event, viewer) {
  trapTab(event, viewer.dialog);
  if (event.key === "Escape") {
    event.preventDefault();
    event.stopPropagation();
    if (viewer.editor) viewer.editor.handleEscape();
    else viewer.close();
    return;
  }
  if (viewer.editor || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest("input, textarea, select")) return;
  const onButton = event.target.closest("button, a");
  const { zoom } = viewer;
  const panStep = zoom.keyStep();
  switch (event.key) {
    case "+": case "=":
      zoom.zoomIn();
      break;
    case "-": case "_":
      zoom.zoomOut();
      break;
    case "0":
      zoom.fitView();
      break;
    case "e": case "E":
      if (viewer.readOnly) return;
      viewer.startEdit();
      break;
    case "ArrowLeft":
      if (zoom.zoomed) zoom.pan(panStep, 0);
      else viewer.step(-1);
      break;
    case "ArrowRight":
      if (zoom.zoomed) zoom.pan(-panStep, 0);
      else viewer.step(1);
      break;
    case "ArrowUp":
      if (!zoom.zoomed) return;
      zoom.pan(0, panStep);
      break;
    case "ArrowDown":
      if (!zoom.zoomed) return;
      zoom.pan(0, -panStep);
      break;
    case "Home":
      if (onButton) return;
      viewer.step(-viewer.index);
      break;
    case "End":
      if (onButton) return;
      viewer.step(viewer.count - 1 - viewer.index);
      break;
    default:
      return;
  }
  event.preventDefault();
}

// The photos on the desktop session page: news of a photo (added, updated, analysed, deleted) put into the
// gallery and the open viewer; deleting one (confirmed in a dialog); opening the viewer (loaded on first
// use); and jumping to a photo from the commit dialog's list of missing details.

import { ApiError, api } from "./api.js";
import { renderCount, targets } from "./desktop-render.js";
import { $, announce, h, setText } from "./dom.js";
import { plural } from "./format.js";

/**
 * Events `image.added`, `image.updated` and `image.analysed`: each carries the whole image. Whichever comes
 * first puts it in the gallery, by id, and a later one replaces it (image.analysed may overtake
 * image.added; the gallery keeps the later analysis).
 */
export function photoChanged(page, type, incoming) {
  const { gallery, state } = page;
  const isNew = !gallery.has(incoming.id);
  const before = gallery.get(incoming.id)?.analysis?.status;
  page.fresh(incoming);
  const image = gallery.get(incoming.id);
  if (!isNew) state.viewer?.update(image);
  if (isNew) announce(`New photo received. ${plural(gallery.size, "photo")} in this session.`);
  else if (type === "image.analysed" && before !== image.analysis?.status) announceAnalysis(page, image);
  renderCount(page);
}

/** A description that arrives (or fails) is said once, briefly; its text is in the details panel. */
function announceAnalysis(page, image) {
  const position = page.gallery.position(image.id);
  if (image.analysis?.status === "done") announce(`AI description ready for photo ${position}. It is in Details.`);
  else if (image.analysis?.status === "failed") announce(`No AI description for photo ${position}.`);
}

/** Event `image.deleted` (from the phone, or another desktop). */
export function photoDeleted(page, imageId) {
  page.freshness.stamp(imageId);
  page.gallery.remove(imageId);
  page.state.viewer?.remove(imageId);
}

/** "Delete" on a photo: confirmed in a dialog showing its thumbnail; one already gone is just removed. */
export function confirmDelete(page, image, position) {
  const dialog = $("#delete-dialog");
  setText($("#delete-dialog-title"), `Delete photo ${position}?`);
  const preview = $("#delete-preview");
  const thumb = document.querySelector(`[data-image-id="${CSS.escape(image.id)}"] img`);
  preview.replaceChildren(...(thumb?.src ? [h("img", { src: thumb.src, alt: "" })] : []));
  dialog.returnValue = "";
  dialog.showModal();
  dialog.addEventListener("close", async () => {
    preview.replaceChildren();
    if (dialog.returnValue !== "delete") return;
    try {
      await api.deleteImage(page.sessionId, image.id);
      page.freshness.stamp(image.id);
      page.gallery.remove(image.id);
      announce(`Photo ${position} deleted.`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) page.gallery.remove(image.id);
      else announce(err?.detail || "The photo could not be deleted.");
    }
  }, { once: true });
}

/** From the commit dialog's gap list: show that photo in the details panel and put the keyboard there. */
export function jumpTo(page, imageId, fields) {
  const { gallery, panel } = page;
  gallery.select([]);
  gallery.setCurrent(imageId, { scroll: true });
  panel.show(targets(gallery));
  panel.focusField(fields[0] || "bodySite");
}

/**
 * Open the viewer on the gallery's photo `index`. The viewer's code is loaded on first use; if it cannot
 * be, the photo opens in a new tab instead.
 */
export async function openViewer(page, index) {
  const { gallery, sessionId, state } = page;
  const images = gallery.images();
  const image = images[index];
  if (!image) return;
  try {
    const { openImageViewer } = await import("./image-viewer.js");
    state.viewer = openImageViewer({
      sessionId,
      images,
      index,
      readOnly: Boolean(state.ended),
      onSaved: (updated) => page.fresh(updated),
      onClose: (last) => {
        state.viewer = null;
        // Back on the photo last shown, so the keyboard carries on from there.
        const id = last?.id && gallery.has(last.id) ? last.id : image.id;
        if (gallery.has(id)) gallery.setCurrent(id, { focus: true, scroll: true });
      },
    });
  } catch (err) {
    console.error("The image viewer could not open", err);
    window.open(image.urls?.full || api.downloadUrl(sessionId, image.id), "_blank", "noopener");
  }
}

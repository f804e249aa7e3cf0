// The phone's details screen for one photo: the photo large enough to see what is being labelled, the quick
// chips (laterality, the 24 body sites, view, a free label; metadata-chips.js, shared with the desktop),
// "Apply to all" (copies this photo's side, body site and view to every photo still waiting), and "Next
// photo" to go through a batch with one thumb. Changes are kept as they are made; nothing is sent until upload.

import { $, announce, setText, show } from "./dom.js";
import { plural, sentenceCase } from "./format.js";
import { MetadataChips, listFields, loadTerminology } from "./metadata-chips.js";

/** The fields "Apply to all" copies: where and how, not the label (which names one photo). */
export const SHARED_FIELDS = ["bodySite", "laterality", "view"];

export class PhotoDetails {
  /**
   * @param {object} hooks
   *   photos(): the photos that can still be edited, in order; position(photo): its number on the review
   *   screen; required: the session's requiredMetadata; onChange(photo): a field changed (keep it);
   *   onClose(): leave the screen.
   */
  constructor({ photos, position, required, onChange, onClose }) {
    this.hooks = { photos, position, onChange, onClose };
    this.required = required || [];
    this.photo = null;
    this.chips = null;
    this.els = {
      title: $("#details-title"),
      img: $("#details-img"),
      num: $("#details-num"),
      host: $("#details-chips"),
      loading: $("#details-loading"),
      required: $("#details-required"),
      apply: $("#apply-all"),
      applyText: $("#apply-all-text"),
      applyNote: $("#apply-note"),
      next: $("#details-next"),
      nextText: $("#details-next-text"),
    };
    $("#details-back").addEventListener("click", () => this.hooks.onClose());
    this.els.apply.addEventListener("click", () => this.applyToAll());
    this.els.next.addEventListener("click", () => {
      const next = this.nextPhoto();
      if (next) this.open(next);
      else this.hooks.onClose();
    });
  }

  /** Show `photo`'s details; the chips come once the terminology has loaded (cached after the first time). */
  async open(photo) {
    this.photo = photo;
    const n = this.hooks.position(photo);
    const total = this.hooks.photos().length;
    setText(this.els.title, total > 1 ? `Photo ${n} of ${total}` : `Photo ${n}`);
    setText(this.els.num, String(n));
    setText(this.els.applyNote, "");
    if (photo.url) this.els.img.src = photo.url;
    else this.els.img.removeAttribute("src");
    this.els.img.alt = `Photo ${n}`;
    this.render();
    await this.ensureChips();
    if (this.photo === photo && this.chips) this.chips.value = photo.metadata || {};
  }

  async ensureChips() {
    if (this.chips) return;
    show(this.els.loading, true);
    setText(this.els.loading, "Loading body sites…");
    try {
      const terminology = await loadTerminology();
      if (this.chips) return;
      this.chips = new MetadataChips({
        terminology, idPrefix: "photo-details", compact: true, onChange: (patch) => this.change(patch),
      });
      this.els.host.append(this.chips.element);
      show(this.els.loading, false);
    } catch {
      setText(this.els.loading,
        "The body-site list could not be loaded. Check the connection and open this photo again, or add the details on the desktop.");
    }
  }

  change(patch) {
    const photo = this.photo;
    if (!photo) return;
    const metadata = { ...(photo.metadata || {}) };
    for (const [field, value] of Object.entries(patch)) {
      if (value === null || value === undefined || value === "") delete metadata[field];
      else metadata[field] = value;
    }
    photo.metadata = metadata;
    setText(this.els.applyNote, "");
    this.hooks.onChange(photo);
    this.render();
  }

  /** Copy this photo's side, body site and view to every other photo still waiting. */
  applyToAll() {
    const source = this.photo?.metadata || {};
    const fields = SHARED_FIELDS.filter((field) => source[field]);
    const others = this.hooks.photos().filter((p) => p !== this.photo);
    if (!fields.length || !others.length) return;
    for (const photo of others) {
      photo.metadata = { ...(photo.metadata || {}) };
      for (const field of fields) photo.metadata[field] = source[field];
      this.hooks.onChange(photo);
    }
    const message = `${sentenceCase(listFields(fields))} copied to ${plural(others.length, "other photo")}.`;
    setText(this.els.applyNote, message);
    announce(message);
  }

  nextPhoto() {
    const photos = this.hooks.photos();
    const at = photos.indexOf(this.photo);
    return at >= 0 ? photos[at + 1] || null : null;
  }

  render() {
    const photo = this.photo;
    if (!photo) return;
    const metadata = photo.metadata || {};
    const missing = this.required.filter((field) => !metadata[field]);
    show(this.els.required, missing.length > 0);
    setText(this.els.required, missing.length
      ? `${sentenceCase(listFields(missing))} needed before this photo can be committed. Add it here or later on the desktop.`
      : "");
    const total = this.hooks.photos().length;
    const copyable = SHARED_FIELDS.some((field) => metadata[field]);
    show(this.els.apply, total > 1);
    this.els.apply.disabled = !copyable;
    setText(this.els.applyText, `Apply to all ${total}`);
    this.els.apply.setAttribute("aria-label",
      `Apply this photo's side, body site and view to all ${plural(total, "photo")}`);
    setText(this.els.nextText, this.nextPhoto() ? "Next photo" : "Done");
  }

  /** Forget the open photo (it was sent, deleted, or the session ended). */
  clear() {
    this.photo = null;
    this.els.img.removeAttribute("src");
  }
}

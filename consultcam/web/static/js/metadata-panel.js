// The desktop's details panel: side, body site (with a search over the coded list), view, label and notes
// for the selected photos, or for the photo in focus when none is selected. One photo saves as it is
// changed; several photos collect the changes and "Apply to N selected" sends them to each
// (`PATCH …/images/{id}`: the fields given replace the stored ones, null clears). Where the selected photos
// differ, the field shows "mixed" and is left alone unless changed. For one photo the AI description, when
// the practice has one, stands above the notes with "Add to notes" (ai-description.js).

import { AiDescription, appendToNotes } from "./ai-description.js";
import { ApiError, api } from "./api.js";
import { $, announce, h, setText, show } from "./dom.js";
import { formatTime, plural } from "./format.js";
import { listFields, metadataGaps } from "./metadata-chips.js";
import { MIXED, MetadataChips, loadTerminology } from "./metadata-chips.js";

const SAVE_DELAY_MS = 500;
const NOTES_MAX = 2000; // the server's limit on metadata.notes (and the field's maxlength)
const FIELDS = ["laterality", "bodySite", "view", "label"];

function sameValue(a, b) {
  const key = (value) => (value && typeof value === "object" ? value.code ?? JSON.stringify(value) : value ?? null);
  return key(a) === key(b);
}

export class MetadataPanel {
  /**
   * @param {{sessionId: string, root: HTMLElement, required(): string[], onSaved(image: object): void,
   *   onTerminology(terminology: object): void, position(id: string): number}} deps
   */
  constructor(deps) {
    this.deps = deps;
    this.root = deps.root;
    this.targets = [];
    this.pending = {};
    this.saving = false;
    this.timer = null;
    this.readOnly = false;
    this.chips = null;
    this.notes = $("#md-notes");
    this.notesMixed = false;
    this.applyBtn = $("#md-apply");
    this.discardBtn = $("#md-discard");
    this.status = $("#md-status");
    this.ai = new AiDescription({
      idPrefix: "md",
      onAdd: (image) => this.addDescription(image),
      notes: () => this.notes.value,
    });
    this.notes.closest(".md-notes").before(this.ai.element);
    this.notes.addEventListener("input", () => {
      this.notesMixed = false;
      this.change({ notes: this.notes.value.trim() || null });
      this.renderAi();
    });
    this.notes.addEventListener("blur", () => this.flush());
    this.applyBtn.addEventListener("click", () => this.apply());
    this.discardBtn.addEventListener("click", () => this.discard());
    this.root.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && this.targets.length > 1) {
        event.preventDefault();
        this.apply();
      }
    });
    this.ready = this.load();
  }

  async load() {
    const slot = $("#md-chips");
    try {
      const terminology = await loadTerminology();
      this.chips = new MetadataChips({
        terminology, idPrefix: "md", search: true, compact: false, onChange: (patch) => this.change(patch),
      });
      slot.replaceChildren(this.chips.element);
      this.deps.onTerminology?.(terminology);
      this.show(this.targets, { force: true });
    } catch (err) {
      slot.replaceChildren(h("p", { class: "notice notice-error", role: "alert" },
        `The body-site list could not be loaded. ${err instanceof ApiError ? err.detail : "Reload the page to try again."}`));
    }
  }

  /**
   * Show `images` (the selection, or the one photo in focus). The same photos again keep unsaved changes
   * and only refresh what is shown around them.
   */
  show(images, { force = false } = {}) {
    const ids = images.map((image) => image.id).join();
    const same = ids === this.targets.map((image) => image.id).join();
    if (!same) this.flush();
    const dirty = Object.keys(this.pending).length > 0 || this.saving;
    if (!same && Object.keys(this.pending).length && this.targets.length > 1) {
      announce("Changes not applied: the selection changed.");
    }
    if (!same) {
      this.pending = {};
      setText(this.status, "");
      delete this.status.dataset.tone;
    }
    this.targets = images;
    const many = images.length > 1;
    this.root.dataset.mode = images.length === 0 ? "empty" : many ? "many" : "one";
    show($("#md-empty"), images.length === 0);
    show($("#md-form"), images.length > 0);
    this.renderHead();
    this.renderMissing();
    this.renderAi();
    show(this.applyBtn, many && !this.readOnly);
    show(this.discardBtn, many && !this.readOnly);
    // A text field being typed in keeps its text when the same photos are shown again (an event echo).
    const typing = same && [this.notes, this.chips?.labelInput].includes(document.activeElement);
    if (same && (dirty || typing) && !force) {
      this.renderButtons();
      return;
    }
    if (!images.length) return;
    const value = {};
    for (const field of FIELDS) {
      const values = images.map((image) => image.metadata?.[field] ?? null);
      if (!values.every((v) => sameValue(v, values[0]))) value[field] = MIXED;
      else if (values[0] !== null && values[0] !== "") value[field] = values[0];
    }
    if (this.chips) this.chips.value = value;
    const notes = images.map((image) => image.metadata?.notes || "");
    this.notesMixed = !notes.every((n) => n === notes[0]);
    if (document.activeElement !== this.notes || !same) this.notes.value = this.notesMixed ? "" : notes[0];
    this.notes.placeholder = this.notesMixed
      ? "Mixed: each photo has its own notes. Typing here replaces them all."
      : many ? "Notes for all selected photos" : "Anything the record should say about this photo";
    this.renderAi();
    this.renderButtons();
  }

  /** The AI description of the one photo shown (none for several: each has its own). */
  renderAi() {
    this.ai.update(this.targets.length === 1 ? this.targets[0] : null, { canAdd: !this.readOnly });
  }

  /**
   * "Add to notes": the description goes at the end of the notes field and is saved at once, as if typed;
   * the keyboard is left in the notes so the clinician can edit it. The only way it enters the record.
   */
  async addDescription(image) {
    if (this.readOnly || this.targets.length !== 1 || this.targets[0].id !== image.id) return;
    const notes = appendToNotes(this.notes.value, image.analysis?.description);
    if (notes.length > NOTES_MAX) {
      throw new Error(`the notes would be longer than ${NOTES_MAX.toLocaleString("en-NZ")} characters. Shorten them first.`);
    }
    this.notes.value = notes;
    this.notesMixed = false;
    this.change({ notes });
    clearTimeout(this.timer);
    const saved = this.apply();
    this.notes.focus({ preventScroll: true });
    this.notes.setSelectionRange(notes.length, notes.length);
    this.notes.scrollIntoView({ block: "nearest" });
    announce("AI description added to the notes. Check and edit it there.");
    await saved; // a failed save says so in the panel's status line and keeps the text to send again
  }

  renderHead() {
    const images = this.targets;
    const thumbs = $("#md-thumbs");
    thumbs.replaceChildren(...images.slice(0, 4).map((image) => h("span", { class: "md-thumb" },
      image.urls?.thumbnail ? h("img", { src: image.urls.thumbnail, alt: "" }) : null)));
    thumbs.dataset.count = String(Math.min(images.length, 4));
    if (images.length === 1) {
      const image = images[0];
      const taken = image.capturedAt || image.createdAt;
      setText($("#md-subject"), `Photo ${this.deps.position(image.id)}`);
      setText($("#md-sub"), [taken ? `Taken ${formatTime(taken)}` : "", image.source === "desktop" ? "from this computer" : "from the phone"]
        .filter(Boolean).join(" · "));
    } else if (images.length > 1) {
      setText($("#md-subject"), `${plural(images.length, "photo")} selected`);
      const positions = images.map((image) => this.deps.position(image.id)).sort((a, b) => a - b);
      setText($("#md-sub"), `Photos ${positions.join(", ")}: changes apply to all`);
    }
  }

  renderMissing() {
    const notice = $("#md-missing");
    const required = this.deps.required();
    const { gaps, fields } = metadataGaps(this.targets, required);
    if (!gaps.length || this.readOnly) {
      show(notice, false);
      return;
    }
    setText(notice, this.targets.length === 1
      ? `Needs a ${listFields(fields)} before it can be committed.`
      : `${gaps.length} of ${this.targets.length} need a ${listFields(fields)} before commit.`);
    show(notice, true);
  }

  renderButtons() {
    const count = Object.keys(this.pending).length;
    const many = this.targets.length > 1;
    this.applyBtn.disabled = !count || this.saving;
    this.discardBtn.disabled = !count || this.saving;
    setText(this.applyBtn, `Apply to ${plural(this.targets.length, "photo")}`);
    this.applyBtn.setAttribute("aria-label", `Apply to ${this.targets.length} selected photos`);
    if (many && count && !this.saving) setText(this.status, "Not applied yet");
  }

  change(patch) {
    if (this.readOnly || !this.targets.length) return;
    // Image metadata holds the FHIR Coding only (the terminology's chip `label` is not part of it).
    if (patch.bodySite) patch = { ...patch, bodySite: { system: patch.bodySite.system, code: patch.bodySite.code, display: patch.bodySite.display } };
    Object.assign(this.pending, patch);
    if (this.targets.length > 1) {
      this.renderButtons();
      return;
    }
    setText(this.status, "");
    clearTimeout(this.timer);
    // Typing in a text field sends once the typing pauses; a chip sends at once.
    const typing = "label" in patch || "notes" in patch;
    this.timer = setTimeout(() => this.apply(), typing ? SAVE_DELAY_MS : 0);
  }

  /** Send an unsaved single-photo change now (before the panel moves on to another photo). */
  flush() {
    if (this.targets.length === 1 && Object.keys(this.pending).length) {
      clearTimeout(this.timer);
      this.apply();
    }
  }

  discard() {
    this.pending = {};
    this.show(this.targets, { force: true });
    setText(this.status, "Changes discarded");
  }

  async apply() {
    clearTimeout(this.timer);
    const patch = this.pending;
    const targets = this.targets;
    if (!Object.keys(patch).length || !targets.length || this.saving) return;
    this.pending = {};
    this.saving = true;
    this.root.dataset.saving = "true";
    this.renderButtons();
    setText(this.status, targets.length > 1 ? `Applying to ${plural(targets.length, "photo")}…` : "Saving…");
    const failed = [];
    for (const image of targets) {
      try {
        const updated = await api.updateImage(this.deps.sessionId, image.id, { metadata: patch });
        this.deps.onSaved(updated);
      } catch (err) {
        failed.push(err);
      }
    }
    this.saving = false;
    delete this.root.dataset.saving;
    if (failed.length) {
      // Keep what was not saved so Apply can send it again.
      this.pending = { ...patch, ...this.pending };
      setText(this.status, `Not saved${targets.length > 1 ? ` for ${failed.length} of ${targets.length}` : ""}: ${failed[0]?.detail || "try again"}`);
      this.status.dataset.tone = "error";
    } else {
      setText(this.status, targets.length > 1 ? `Applied to ${plural(targets.length, "photo")}` : "Saved");
      this.status.dataset.tone = "ok";
      announce(targets.length > 1 ? `Details applied to ${plural(targets.length, "photo")}.` : "Details saved.");
    }
    this.targets = targets.map((image) => this.deps.latest?.(image.id) || image);
    this.renderMissing();
    this.renderAi();
    this.renderButtons();
    if (Object.keys(this.pending).length && targets.length === 1 && !failed.length) this.apply();
  }

  /** Move keyboard focus into the panel, to the control for `field` (body site: its search box). */
  focusField(field) {
    const group = this.chips?.element.querySelector(`.mchips-${field}`);
    const target = group?.querySelector("input, button[tabindex='0']") || this.chips?.element.querySelector("button[tabindex='0']");
    if (!target) {
      this.root.focus();
      return;
    }
    if (target.type === "search" && target.value) {
      // A fresh search for a fresh photo: the last one's words would hide the sites.
      target.value = "";
      target.dispatchEvent(new Event("input", { bubbles: true }));
    }
    target.scrollIntoView({ block: "nearest" });
    target.focus();
  }

  setReadOnly() {
    this.readOnly = true;
    clearTimeout(this.timer);
    this.show([]);
  }
}

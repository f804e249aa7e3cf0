// Adding photos from the desktop: drag and drop onto the gallery, or the "Add photos" file picker. Each file
// is shrunk like the phone does (resize.js: upright, EXIF-free JPEG, long edge ≤ 2048 px, ≤ 1 MB), then sent
// with the phone's own upload steps (upload-queue.js: presign → PUT with progress → register; source
// "desktop" because the clinician's cookie sends it). A tray shows a bar per file and says plainly why a file
// was not added (not a photo, too large, session full, no consent).

import { ApiError } from "./api.js";
import { h, icon, setText, show } from "./dom.js";
import { formatBytes, plural } from "./format.js";
import { resizePhoto } from "./resize.js";
import { runPool, uploadPhoto } from "./upload-queue.js";

const CONCURRENCY = 2;
const DONE_ROW_MS = 1600;
// The server's accepted types (ACCEPTED_CONTENT_TYPES, consultcam/images/processing/formats.py) and their
// extensions, for files whose type the browser does not know (HEIC on most desktops).
const DEFAULT_TYPES = ["image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"];
const EXTENSION_TYPES = { jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", webp: "image/webp", heic: "image/heic", heif: "image/heif" };

const STAGE_TEXT = {
  waiting: "Waiting…",
  preparing: "Preparing…",
  uploading: "Uploading",
  registering: "Checking the photo…",
  done: "Added",
};

/** Why a file was not added, in plain words, from an ApiError or a local check. */
export function describeUploadError(err, { maxImages = 50 } = {}) {
  if (!(err instanceof ApiError)) return err?.message || "It could not be added.";
  if (err.status === 415) return "Not a photo consultcam accepts. Use JPEG, PNG, WebP or HEIC.";
  if (err.status === 413) return "Too large to send, even after shrinking. Try a smaller copy.";
  if (err.name === "ConsentRequired") return "Not added: consent must be recorded first.";
  if (err.status === 409 && /full|SessionFull|TooMany/i.test(`${err.name} ${err.detail}`)) {
    return `The session is full (${maxImages} photos). Commit or delete some first.`;
  }
  if (err.status === 422) return `Not a readable photo. ${err.detail}`;
  return err.detail;
}

export class DesktopUpload {
  /**
   * @param {{sessionId: string, zone: HTMLElement, input: HTMLInputElement, tray: HTMLElement,
   *   ensureConsent(count: number): Promise<boolean>, remaining(): number, onUploaded(image: object): void,
   *   settings: {maxEdgePx?: number, maxBytes?: number, maxUploadBytes?: number, maxImages?: number,
   *   acceptedTypes?: string[]}, enabled(): boolean}} deps
   */
  constructor(deps) {
    this.deps = deps;
    this.settings = {
      maxEdgePx: 2048, maxBytes: 1024 * 1024, maxUploadBytes: 10 * 1024 * 1024, maxImages: 50,
      acceptedTypes: DEFAULT_TYPES, ...(deps.settings || {}),
    };
    this.zone = deps.zone;
    this.tray = deps.tray;
    this.list = h("ul", { class: "up-list" });
    this.title = h("p", { class: "up-title", role: "status" });
    this.clearBtn = h("button", { type: "button", class: "btn btn-quiet btn-sm", hidden: true }, "Clear");
    this.clearBtn.addEventListener("click", () => this.clearFinished());
    this.tray.replaceChildren(h("div", { class: "up-head" }, icon("upload"), this.title, this.clearBtn), this.list);
    this.rows = [];
    this.depth = 0;

    deps.input.addEventListener("change", () => {
      const files = [...deps.input.files];
      deps.input.value = "";
      this.add(files);
    });
    const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
    this.zone.addEventListener("dragenter", (event) => {
      if (!hasFiles(event) || !deps.enabled()) return;
      event.preventDefault();
      this.depth += 1;
      this.zone.dataset.drag = "true";
    });
    this.zone.addEventListener("dragover", (event) => {
      if (!hasFiles(event) || !deps.enabled()) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    this.zone.addEventListener("dragleave", () => {
      this.depth = Math.max(0, this.depth - 1);
      if (!this.depth) delete this.zone.dataset.drag;
    });
    this.zone.addEventListener("drop", (event) => {
      this.depth = 0;
      delete this.zone.dataset.drag;
      if (!event.dataTransfer?.files?.length) return;
      event.preventDefault();
      if (deps.enabled()) this.add([...event.dataTransfer.files]);
    });
    // A photo dropped beside the gallery must not replace the page with the file.
    for (const type of ["dragover", "drop"]) {
      window.addEventListener(type, (event) => { if (hasFiles(event)) event.preventDefault(); });
    }
  }

  /** Add `files` (File[]) to the session: check, ask for consent if needed, shrink, upload. */
  async add(files) {
    if (!files.length) return;
    const rows = files.map((file) => this.row(file));
    const photos = [];
    for (const row of rows) {
      const type = this.typeOf(row.file);
      if (!type) this.fail(row, `Not a photo consultcam accepts (${row.file.type || "unknown type"}). Use JPEG, PNG, WebP or HEIC.`);
      else photos.push(row);
    }
    if (photos.length && !(await this.deps.ensureConsent(photos.length))) {
      for (const row of photos) this.fail(row, "Not added: consent was not recorded.");
      return;
    }
    const room = Math.max(0, this.deps.remaining());
    for (const row of photos.slice(room)) {
      this.fail(row, `Not added: the session is full (${this.settings.maxImages} photos). Commit or delete some first.`);
    }
    await runPool(photos.slice(0, room), CONCURRENCY, (row) => this.send(row));
    this.renderTitle();
  }

  typeOf(file) {
    const accepted = this.settings.acceptedTypes;
    if (accepted.includes(file.type)) return file.type;
    const ext = String(file.name || "").split(".").pop().toLowerCase();
    return !file.type || file.type === "application/octet-stream" ? (EXTENSION_TYPES[ext] ?? null) : null;
  }

  async send(row) {
    const { file } = row;
    this.stage(row, "preparing");
    let blob;
    try {
      const result = await resizePhoto(file, { maxEdgePx: this.settings.maxEdgePx, maxBytes: this.settings.maxBytes });
      blob = result.blob;
    } catch {
      // The browser cannot decode it (HEIC in Chrome): send the original, which the server converts and strips.
      if (file.size > this.settings.maxUploadBytes) {
        this.fail(row, `Too large to send (${formatBytes(file.size)}; at most ${formatBytes(this.settings.maxUploadBytes)}).`);
        return;
      }
      blob = file.type ? file : new Blob([file], { type: this.typeOf(file) });
    }
    try {
      const image = await uploadPhoto(this.deps.sessionId, { blob, filename: file.name }, {
        onStage: (stage) => this.stage(row, stage),
        onProgress: (fraction) => this.progress(row, fraction),
      });
      this.stage(row, "done");
      this.deps.onUploaded(image);
      setTimeout(() => this.drop(row), DONE_ROW_MS);
    } catch (err) {
      this.fail(row, describeUploadError(err, this.settings));
    }
  }

  // -- the tray --------------------------------------------------------------------------------------

  row(file) {
    const bar = h("progress", { max: "1", "aria-label": `Upload of ${file.name}` });
    const status = h("span", { class: "up-status" });
    const dismiss = h("button", { type: "button", class: "btn btn-quiet btn-icon up-dismiss", "aria-label": `Dismiss ${file.name}`, hidden: true },
      icon("x"));
    const li = h("li", { class: "up-row", dataset: { state: "waiting" } },
      icon("images", "icon up-icon"),
      h("span", { class: "up-name", title: file.name }, file.name || "Photo"),
      h("span", { class: "up-size" }, formatBytes(file.size)),
      bar, status, dismiss);
    const row = { file, li, bar, status, dismiss, state: "waiting" };
    dismiss.addEventListener("click", () => this.drop(row));
    this.rows.push(row);
    this.list.append(li);
    show(this.tray, true);
    this.stage(row, "waiting");
    return row;
  }

  stage(row, stage) {
    row.state = stage;
    row.li.dataset.state = stage;
    setText(row.status, STAGE_TEXT[stage] || stage);
    if (stage === "preparing" || stage === "waiting") row.bar.removeAttribute("value");
    if (stage === "done") row.bar.value = 1;
    this.renderTitle();
  }

  progress(row, fraction) {
    row.bar.value = fraction;
    setText(row.status, `Uploading ${Math.round(fraction * 100)}%`);
  }

  fail(row, message) {
    row.state = "failed";
    row.li.dataset.state = "failed";
    row.bar.hidden = true;
    setText(row.status, message);
    show(row.dismiss, true);
    this.renderTitle();
  }

  drop(row) {
    const hadFocus = row.li.contains(document.activeElement);
    row.li.remove();
    this.rows = this.rows.filter((other) => other !== row);
    if (hadFocus) (this.rows.find((other) => other.state === "failed")?.dismiss || this.deps.input.labels?.[0] || document.body).focus?.();
    this.renderTitle();
  }

  clearFinished() {
    for (const row of this.rows.filter((r) => r.state === "failed" || r.state === "done")) this.drop(row);
  }

  renderTitle() {
    const active = this.rows.filter((row) => !["failed", "done"].includes(row.state)).length;
    const failed = this.rows.filter((row) => row.state === "failed").length;
    const done = this.rows.filter((row) => row.state === "done").length;
    show(this.tray, this.rows.length > 0);
    show(this.clearBtn, !active && failed > 0);
    if (active) setText(this.title, `Adding ${plural(active, "photo")} from this computer…`);
    else if (failed) setText(this.title, `${plural(failed, "file")} not added`);
    else if (done) setText(this.title, `${plural(done, "photo")} added`);
  }
}

// The camera screen's viewfinder: the live preview's states (starting, live, unavailable with the file picker
// as a way out), the switch-camera and torch buttons (shown only when the device has them), the shutter flash,
// and the quick quality chip ("Photo 2: may be blurred · Retake") after a shot. The camera itself is camera.js.

import { $, announce, setText, show } from "./dom.js";
import { CameraError } from "./camera.js";
import { describeQualityWarning } from "./format.js";

export class Viewfinder {
  /**
   * @param {import("./camera.js").Camera} camera
   * @param {{canRun(): boolean, onPickFiles(): void, onRetake(photoId: string): void, onChange(): void}} hooks
   *   canRun: the camera screen is showing (else a preview that finished starting is stopped again);
   *   onChange: the camera's state changed (the page re-renders the shutter)
   */
  constructor(camera, hooks) {
    this.camera = camera;
    this.hooks = hooks;
    this.qualityPhotoId = null;
    this.els = {
      root: $("#viewfinder"),
      msg: $("#camera-msg"),
      flash: $("#flash"),
      switchBtn: $("#switch-camera"),
      switchText: $("#switch-camera-text"),
      torchBtn: $("#torch-btn"),
      quality: $("#quality-chip"),
      qualityText: $("#quality-text"),
    };
    this.els.switchBtn.addEventListener("click", () => this.switchCamera());
    this.els.torchBtn.addEventListener("click", () => this.toggleTorch());
    $("#quality-retake").addEventListener("click", () => {
      const id = this.qualityPhotoId;
      this.hideQuality();
      if (id) this.hooks.onRetake(id);
    });
    $("#quality-close").addEventListener("click", () => this.hideQuality());
  }

  /** Start (or restart) the preview; says what is wrong when it cannot. */
  async start() {
    this.setState("starting");
    try {
      await this.camera.start();
      if (!this.hooks.canRun()) {
        this.camera.stop();
        return;
      }
      this.setState("live");
    } catch (err) {
      this.setState("unavailable", err instanceof CameraError ? err.message : "The camera could not be started.");
    }
    this.renderTools();
    this.hooks.onChange();
  }

  stop() {
    this.camera.stop();
  }

  setState(state, message = "") {
    this.els.root.dataset.state = state;
    const msg = this.els.msg;
    msg.replaceChildren();
    show(msg, state !== "live");
    if (state === "starting") {
      msg.append(Object.assign(document.createElement("div"), { className: "spinner spinner-light" }));
      msg.append(Object.assign(document.createElement("p"), { textContent: "Starting camera…" }));
    } else if (state === "unavailable") {
      const title = Object.assign(document.createElement("p"), { className: "vf-title", textContent: "Camera not available" });
      const body = Object.assign(document.createElement("p"), { textContent: message });
      const actions = Object.assign(document.createElement("div"), { className: "vf-actions" });
      const pick = Object.assign(document.createElement("button"), {
        type: "button", className: "btn btn-primary btn-lg", textContent: "Add photos",
      });
      pick.addEventListener("click", () => this.hooks.onPickFiles());
      const again = Object.assign(document.createElement("button"), {
        type: "button", className: "btn btn-on-dark", textContent: "Try camera again",
      });
      again.addEventListener("click", () => this.start());
      actions.append(pick, again);
      msg.append(title, body, actions);
    }
  }

  renderTools() {
    const { camera, els } = this;
    const live = camera.active;
    const facing = camera.facingMode;
    show(els.switchBtn, live && camera.canSwitch);
    els.root.dataset.facing = facing || "";
    setText(els.switchText, facing === "environment" ? "Switch to the front camera"
      : facing === "user" ? "Switch to the back camera" : "Switch camera");
    show(els.torchBtn, live && camera.hasTorch);
    els.torchBtn.setAttribute("aria-pressed", String(camera.torchOn));
    els.torchBtn.querySelector("use").setAttribute("href", camera.torchOn ? "#i-torch" : "#i-torch-off");
  }

  async switchCamera() {
    this.els.switchBtn.disabled = true;
    this.setState("starting");
    try {
      await this.camera.switchCamera();
      this.setState("live");
      const facing = this.camera.facingMode;
      announce(facing === "user" ? "Front camera." : facing === "environment" ? "Back camera." : "Camera switched.");
    } catch (err) {
      this.setState("unavailable", err instanceof CameraError ? err.message : "The camera could not be started.");
    } finally {
      this.els.switchBtn.disabled = false;
      this.renderTools();
      this.hooks.onChange();
    }
  }

  async toggleTorch() {
    const on = await this.camera.setTorch(!this.camera.torchOn);
    this.renderTools();
    announce(on ? "Torch on." : "Torch off.");
  }

  /** The shutter's feedback: a white flash and a short buzz. */
  flash() {
    navigator.vibrate?.(25);
    this.els.flash.classList.remove("on");
    void this.els.flash.offsetWidth; // restart the animation
    this.els.flash.classList.add("on");
  }

  /**
   * After a shot: a non-blocking chip when the quick check (quality-check.js) found the photo blurred, dark or
   * blown, with Retake. Low resolution is left to the review card: a retake would not change it.
   * @param {{id: string, check: {warnings: string[]} | null}} photo
   * @param {number} position the photo's number on the review screen
   */
  offerRetake(photo, position) {
    const warnings = (photo.check?.warnings || []).filter((w) => w !== "low-resolution");
    if (!warnings.length) return;
    const text = `Photo ${position}: ${warnings.map((w) => describeQualityWarning(w).toLowerCase()).join(", ")}`;
    setText(this.els.qualityText, text);
    this.qualityPhotoId = photo.id;
    show(this.els.quality, true);
    announce(`${text}. Retake it, or carry on.`);
  }

  hideQuality() {
    this.qualityPhotoId = null;
    show(this.els.quality, false);
  }
}

// The phone's camera: a live preview through getUserMedia (back camera preferred) and a still capture,
// with ImageCapture.takePhoto() where the browser has it (full sensor resolution) and a video frame otherwise.
// Switching camera asks for the other facing mode (front/back) and, where the browser cannot say which way a
// camera faces, steps through the video inputs by device id. The torch is offered only where the track says
// it has one (MediaTrackCapabilities.torch, Image Capture spec).
//
// A frame grabbed from the preview (createImageBitmap(video), the only way where there is no ImageCapture:
// Firefox, Safari/WebKit) is sometimes empty in WebKit, all black although the preview shows the picture. Such
// a frame is grabbed again a few times, a short wait apart, before it is shown; if every try is empty (a lens
// covered), the last one is kept and the quick check calls it dark, with Retake.

export class CameraError extends Error {
  /** kind: "denied" | "missing" | "busy" | "unsupported" */
  constructor(kind, message) {
    super(message);
    this.name = "CameraError";
    this.kind = kind;
  }
}

const TAKE_PHOTO_TIMEOUT_MS = 4000;
const EMPTY_FRAME_TRIES = 8; // at most ~1 s of waiting in all
const EMPTY_FRAME_WAIT_MS = 120;
const PROBE_SIZE = 32; // the frame is judged on a 32×32 thumbnail: cheap, and enough to tell black from a picture
const BLACK_LEVEL = 3; // 0…255: a sensor's darkest real picture still has noise above this somewhere

export class Camera {
  /** @param {HTMLVideoElement} video the preview element */
  constructor(video) {
    this.video = video;
    this.stream = null;
    this.imageCapture = null;
    this.starting = null;
    this.facing = "environment"; // what we ask for; `facingMode` below is what the track reports
    this.deviceId = null; // set when stepping through devices
    this.devices = [];
    this.torchOn = false;
  }

  /** "environment" | "user" | "" (the track does not say). */
  get facingMode() {
    return this.track?.getSettings?.().facingMode || "";
  }

  get track() {
    return this.stream?.getVideoTracks()[0] || null;
  }

  /** More than one camera to switch between (known once the preview has started). */
  get canSwitch() {
    return this.devices.length > 1;
  }

  /** The track can turn its torch on (rear cameras on most Android phones; not iOS Safari). */
  get hasTorch() {
    try {
      return Boolean(this.track?.getCapabilities?.().torch);
    } catch {
      return false;
    }
  }

  get active() {
    return Boolean(this.stream?.getVideoTracks().some((t) => t.readyState === "live"));
  }

  /** Start the preview; resolves when frames are showing. Throws CameraError with a user-facing message. */
  async start() {
    if (this.active) return;
    if (this.starting) return this.starting;
    this.starting = this.open().finally(() => { this.starting = null; });
    return this.starting;
  }

  async open() {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new CameraError("unsupported",
        "This browser cannot show the camera on this page. Use “Add photos” to take pictures with the phone's camera app.");
    }
    let stream;
    const size = { width: { ideal: 1920 }, height: { ideal: 1440 } };
    const video = this.deviceId
      ? { deviceId: { exact: this.deviceId }, ...size }
      : { facingMode: { ideal: this.facing }, ...size };
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: false, video });
    } catch (err) {
      if (!this.deviceId && this.facing === "environment") throw toCameraError(err);
      // The camera asked for is gone (or busy): go back to the default back camera.
      this.deviceId = null;
      this.facing = "environment";
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: false, video: { facingMode: { ideal: "environment" }, ...size } });
      } catch (again) {
        throw toCameraError(again);
      }
    }
    this.stream = stream;
    this.torchOn = false;
    // Labels and ids are only listed once permission is granted, i.e. now.
    try {
      this.devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
    } catch {
      this.devices = [];
    }
    const [track] = stream.getVideoTracks();
    this.imageCapture = typeof ImageCapture === "function" && track ? new ImageCapture(track) : null;
    this.video.srcObject = stream;
    try {
      await this.video.play();
    } catch {
      // Autoplay of a muted inline video is allowed; a failure here still leaves frames flowing.
    }
    if (this.video.readyState < 2) {
      await new Promise((resolve) => this.video.addEventListener("loadeddata", resolve, { once: true }));
    }
  }

  stop() {
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.imageCapture = null;
    this.torchOn = false;
    this.video.srcObject = null;
  }

  /**
   * Switch to the other camera: the other facing mode when the track reports one, else the next video input.
   * Resolves when the new preview shows; throws CameraError (the page then offers the files instead).
   */
  async switchCamera() {
    if (!this.canSwitch) return;
    const current = this.track?.getSettings?.().deviceId || this.deviceId;
    const facing = this.facingMode;
    if (facing === "environment" || facing === "user") {
      this.facing = facing === "environment" ? "user" : "environment";
      this.deviceId = null;
      // A phone with several back cameras lists them all: pick one that faces the other way, if labelled so.
      const wanted = this.facing === "user" ? /front|user|facing front/i : /back|rear|environment/i;
      const match = this.devices.find((d) => d.deviceId !== current && wanted.test(d.label));
      if (match) this.deviceId = match.deviceId;
    } else {
      const index = this.devices.findIndex((d) => d.deviceId === current);
      const next = this.devices[(index + 1) % this.devices.length];
      this.deviceId = next?.deviceId || null;
      this.facing = /front|user/i.test(next?.label || "") ? "user" : "environment";
    }
    this.stop();
    await this.start();
  }

  /** Turn the torch on or off; resolves to the state the track accepted. */
  async setTorch(on) {
    if (!this.hasTorch) return false;
    try {
      await this.track.applyConstraints({ advanced: [{ torch: Boolean(on) }] });
      this.torchOn = Boolean(on);
    } catch {
      this.torchOn = false;
    }
    return this.torchOn;
  }

  /**
   * Take a still. Returns a Blob (a JPEG from takePhoto, which may carry EXIF orientation) or an
   * ImageBitmap of the current frame; the resize worker accepts both.
   */
  async capture() {
    if (!this.active) throw new CameraError("missing", "The camera is not running.");
    if (this.imageCapture) {
      try {
        const blob = await withTimeout(this.imageCapture.takePhoto(), TAKE_PHOTO_TIMEOUT_MS);
        if (blob && blob.size > 0) return blob;
      } catch {
        // Some devices refuse takePhoto (or the track was reconfigured); the preview frame still works.
        this.imageCapture = null;
      }
    }
    return this.grabFrame();
  }

  /** The preview's current frame as an ImageBitmap, grabbed again while it comes out empty (see the header). */
  async grabFrame() {
    let frame = await createImageBitmap(this.video);
    for (let tries = 1; tries < EMPTY_FRAME_TRIES && isEmptyFrame(frame); tries += 1) {
      frame.close();
      await new Promise((resolve) => setTimeout(resolve, EMPTY_FRAME_WAIT_MS));
      if (!this.active) throw new CameraError("missing", "The camera is not running.");
      frame = await createImageBitmap(this.video);
    }
    return frame;
  }
}

/**
 * Whether a grabbed frame holds no picture: every pixel of its 32×32 thumbnail is black (R, G and B ≤ 3 of
 * 255) or fully transparent. False when the pixels cannot be read (then the frame is used as it is).
 * @param {ImageBitmap} frame
 */
function isEmptyFrame(frame) {
  if (!frame?.width || !frame?.height) return true;
  try {
    const canvas = typeof OffscreenCanvas === "function"
      ? new OffscreenCanvas(PROBE_SIZE, PROBE_SIZE)
      : Object.assign(document.createElement("canvas"), { width: PROBE_SIZE, height: PROBE_SIZE });
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(frame, 0, 0, PROBE_SIZE, PROBE_SIZE);
    const { data } = ctx.getImageData(0, 0, PROBE_SIZE, PROBE_SIZE);
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] > 0 && (data[i] > BLACK_LEVEL || data[i + 1] > BLACK_LEVEL || data[i + 2] > BLACK_LEVEL)) return false;
    }
    return true;
  } catch {
    return false;
  }
}

function withTimeout(promise, ms) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), ms)),
  ]);
}

function toCameraError(err) {
  switch (err?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return new CameraError("denied",
        "Camera access was refused. Allow the camera for this page in the browser's settings, or use “Add photos” to take pictures with the phone's camera app.");
    case "NotFoundError":
    case "OverconstrainedError":
      return new CameraError("missing",
        "No camera was found. Use “Add photos” to choose pictures instead.");
    case "NotReadableError":
    case "AbortError":
      return new CameraError("busy",
        "The camera is being used by another app. Close that app and tap “Try camera again”, or use “Add photos”.");
    default:
      return new CameraError("unsupported",
        "The camera could not be started. Use “Add photos” to take pictures with the phone's camera app.");
  }
}

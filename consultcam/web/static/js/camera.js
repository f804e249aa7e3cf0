// The phone's camera: a live preview through getUserMedia (back camera preferred) and a still capture,
// with ImageCapture.takePhoto() where the browser has it (full sensor resolution) and a video frame otherwise.

export class CameraError extends Error {
  /** kind: "denied" | "missing" | "busy" | "unsupported" */
  constructor(kind, message) {
    super(message);
    this.name = "CameraError";
    this.kind = kind;
  }
}

const TAKE_PHOTO_TIMEOUT_MS = 4000;

export class Camera {
  /** @param {HTMLVideoElement} video the preview element */
  constructor(video) {
    this.video = video;
    this.stream = null;
    this.imageCapture = null;
    this.starting = null;
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
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: false,
        video: { facingMode: { ideal: "environment" }, width: { ideal: 1920 }, height: { ideal: 1440 } },
      });
    } catch (err) {
      throw toCameraError(err);
    }
    this.stream = stream;
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
    this.video.srcObject = null;
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
    return createImageBitmap(this.video);
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

// The image editor's drawing surface: the photo as rotated (and cropped, outside the crop tool), the
// annotations drawn by edit-render.js exactly as Pillow burns them in, the selected mark's outline, and the
// crop box laid over the whole photo while the crop tool is on. It keeps the last drawn boxes and layout
// for hit testing (edit-model.hitTest).

import { finalSize, fitScale } from "./edit-geometry.js";
import { annotationStyle, drawAnnotation, drawPhoto } from "./edit-render.js";

/** The picture's margin inside the stage, px on each side. */
const STAGE_MARGIN = 16;
/** The most the picture is enlarged to fill the stage. */
const MAX_SCALE = 4;

export class EditCanvas {
  /**
   * @param {{img: HTMLImageElement, canvas: HTMLCanvasElement, frame: HTMLElement, cropBox: HTMLElement,
   *   stage: HTMLElement}} parts `img` is the loaded original photo; `frame` holds the canvas and is sized
   *   to the shown picture; `cropBox` is positioned in % of it; `stage` is the space to fit it in.
   */
  constructor({ img, canvas, frame, cropBox, stage }) {
    Object.assign(this, { img, canvas, frame, cropBox, stage });
    this.base = { key: "", canvas: document.createElement("canvas") };
    /** `{scale, size, style}`: on-screen px per picture px, the shown picture's px size, the line sizes. */
    this.layout = { scale: 1, size: { width: 1, height: 1 }, style: annotationStyle({ width: 1, height: 1 }) };
    /** Map id → `{box, item}` of the annotations last drawn, in drawing order. */
    this.boxes = new Map();
  }

  /** The stored photo's own size in px. */
  get natural() {
    return { width: this.img.naturalWidth, height: this.img.naturalHeight };
  }

  /**
   * Draw `model` (an EditModel) as shown with the crop tool on (`cropping`) or off, with annotation
   * `selected` outlined and `draft` (a shape being drawn, original frame) on top.
   */
  draw(model, { cropping, selected, draft }) {
    const { rotation } = model;
    const crop = model.viewCrop(cropping);
    const key = `${rotation}|${crop ? [crop.x, crop.y, crop.width, crop.height].join(",") : "-"}`;
    if (this.base.key !== key) {
      this.base.size = drawPhoto(this.base.canvas, this.img, rotation, crop);
      this.base.key = key;
    }
    const size = this.base.size;
    // Line and text sizes are those of the saved picture, even while the crop tool shows the whole photo.
    const styleSize = finalSize(this.natural, rotation, model.crop ? model.rotatedCrop : null);
    if (this.canvas.width !== size.width) this.canvas.width = size.width;
    if (this.canvas.height !== size.height) this.canvas.height = size.height;
    const ctx = this.canvas.getContext("2d");
    ctx.drawImage(this.base.canvas, 0, 0);
    const style = annotationStyle(styleSize);
    this.boxes = new Map();
    for (const item of model.shown(crop, draft)) {
      const box = drawAnnotation(ctx, item, size, style);
      if (item.id) this.boxes.set(item.id, { box, item });
    }

    const stageRect = this.stage.getBoundingClientRect();
    const margin = 2 * STAGE_MARGIN;
    const scale = fitScale(size, { width: stageRect.width - margin, height: stageRect.height - margin }, MAX_SCALE);
    this.layout = { scale, size, style };
    this.frame.style.width = `${Math.max(1, Math.floor(size.width * scale))}px`;
    this.frame.style.height = `${Math.max(1, Math.floor(size.height * scale))}px`;

    const chosen = selected && this.boxes.get(selected);
    if (chosen) outline(ctx, chosen.box, scale);
    this.placeCropBox(cropping ? model.rotatedCrop : null);
  }

  /** Show the crop box over `rect` (rotated-frame fractions), or hide it for null. */
  placeCropBox(rect) {
    this.cropBox.hidden = !rect;
    if (!rect) return;
    Object.assign(this.cropBox.style, {
      left: `${rect.x * 100}%`, top: `${rect.y * 100}%`, width: `${rect.width * 100}%`, height: `${rect.height * 100}%`,
    });
  }
}

/** The selection: a dashed white-and-teal box 4 screen px outside `box` (picture px), 2 screen px wide. */
function outline(ctx, box, scale) {
  const pad = 4 / scale;
  const rect = [box.left - pad, box.top - pad, box.right - box.left + 2 * pad, box.bottom - box.top + 2 * pad];
  ctx.save();
  ctx.lineWidth = 2 / scale;
  ctx.setLineDash([6 / scale, 4 / scale]);
  ctx.strokeStyle = "#ffffff";
  ctx.strokeRect(...rect);
  ctx.lineDashOffset = 5 / scale;
  ctx.strokeStyle = "#0b5e72";
  ctx.strokeRect(...rect);
  ctx.restore();
}

// A quick blur and exposure check of the photo just taken, on the phone, so the GP can retake it while the
// patient is still there. It mirrors the server's consultcam/analysis/quality.py (same figures, same
// thresholds, calibrated in docs/quality-calibration.md); the server's figures stay the record. The check is a
// hint: it never stops a photo from being kept or sent.
//
// Pure functions over RGBA pixels, so the resize worker (which already holds the decoded photo) can run it
// off the main thread in a few milliseconds.

/** Sharpness is measured at this long edge (pixels): quality.py ANALYSIS_EDGE_PX. */
export const ANALYSIS_EDGE_PX = 512;
/** quality.py thresholds (docs/quality-calibration.md, "Figures and thresholds"). */
export const BLURRY_SHARPNESS = 150;
export const DARK_MEAN_LUMA = 40;
export const BRIGHT_OVEREXPOSED_SHARE = 0.05;
export const BRIGHT_MEAN_LUMA = 215;
export const LOW_RESOLUTION_PIXELS = 1024 * 768;
const UNDEREXPOSED_LUMA = 16;
const OVEREXPOSED_LUMA = 240;

/**
 * Measure a photo's sharpness and exposure.
 * @param {Uint8ClampedArray} rgba pixels as ImageData.data (width × height × 4), the photo at upload size
 * @param {number} width  pixels
 * @param {number} height pixels
 * @returns {{sharpness: number, meanLuma: number, underexposed: number, overexposed: number,
 *   warnings: string[]}} warnings ⊆ ["blurry", "dark", "bright", "low-resolution"], in that order (the
 *   server's QUALITY_WARNINGS). sharpness: variance of the 4-neighbour Laplacian of the BT.601 luma image,
 *   box-downscaled to a 512 px long edge and contrast-stretched (1st–99th percentile → 0–255); Pech-Pacheco
 *   et al., ICPR 2000. A constant image scores 0 ("blurry").
 */
export function assessPixels(rgba, width, height) {
  const total = width * height;
  const grey = new Uint8Array(total);
  const histogram = new Uint32Array(256);
  let sum = 0;
  for (let i = 0, p = 0; i < total; i += 1, p += 4) {
    // Pillow's convert("L"): ITU-R 601-2 luma in 16-bit fixed point, rounded.
    const luma = (rgba[p] * 19595 + rgba[p + 1] * 38470 + rgba[p + 2] * 7471 + 0x8000) >> 16;
    grey[i] = luma;
    histogram[luma] += 1;
    sum += luma;
  }
  let under = 0;
  let over = 0;
  for (let level = 0; level < UNDEREXPOSED_LUMA; level += 1) under += histogram[level];
  for (let level = OVEREXPOSED_LUMA + 1; level < 256; level += 1) over += histogram[level];
  const meanLuma = sum / total;
  const underexposed = under / total;
  const overexposed = over / total;
  const sharpness = laplacianSharpness(grey, width, height);

  const warnings = [];
  if (sharpness < BLURRY_SHARPNESS) warnings.push("blurry");
  if (meanLuma < DARK_MEAN_LUMA) warnings.push("dark");
  if (overexposed > BRIGHT_OVEREXPOSED_SHARE || meanLuma > BRIGHT_MEAN_LUMA) warnings.push("bright");
  if (total < LOW_RESOLUTION_PIXELS) warnings.push("low-resolution");
  return {
    sharpness: Math.round(sharpness * 10) / 10,
    meanLuma: Math.round(meanLuma * 10) / 10,
    underexposed: Math.round(underexposed * 10000) / 10000,
    overexposed: Math.round(overexposed * 10000) / 10000,
    warnings,
  };
}

/** quality.py `_sharpness` on an 8-bit grey image. */
function laplacianSharpness(grey, width, height) {
  let pixels;
  let w = width;
  let h = height;
  const scale = ANALYSIS_EDGE_PX / Math.max(width, height);
  if (scale < 1) {
    w = Math.max(1, Math.round(width * scale));
    h = Math.max(1, Math.round(height * scale));
    pixels = boxResize(grey, width, height, w, h);
  } else {
    pixels = Float32Array.from(grey);
  }
  if (Math.min(w, h) < 3) return 0;
  const [low, high] = percentiles(pixels, 0.01, 0.99);
  if (high - low >= 1) {
    const gain = 255 / (high - low);
    for (let i = 0; i < pixels.length; i += 1) pixels[i] = (pixels[i] - low) * gain;
  }
  let n = 0;
  let mean = 0;
  let m2 = 0;
  for (let y = 1; y < h - 1; y += 1) {
    const row = y * w;
    for (let x = 1; x < w - 1; x += 1) {
      const i = row + x;
      const value = pixels[i - 1] + pixels[i + 1] + pixels[i - w] + pixels[i + w] - 4 * pixels[i];
      n += 1; // Welford's running variance: one pass, no second buffer
      const delta = value - mean;
      mean += delta / n;
      m2 += delta * (value - mean);
    }
  }
  return n ? m2 / n : 0;
}

/**
 * Pillow's BOX resampling (Image.resize(…, BOX)), separable: each output pixel is the mean of the input
 * pixels whose centres fall inside its footprint; the result is rounded to 8 bits as Pillow stores an "L"
 * image.
 */
function boxResize(src, sw, sh, dw, dh) {
  const horizontal = boxCoefficients(sw, dw);
  const vertical = boxCoefficients(sh, dh);
  const tmp = new Uint8Array(dw * sh);
  for (let y = 0; y < sh; y += 1) {
    const row = y * sw;
    for (let x = 0; x < dw; x += 1) {
      const [start, end] = horizontal[x];
      let acc = 0;
      for (let i = start; i < end; i += 1) acc += src[row + i];
      tmp[y * dw + x] = Math.min(255, Math.max(0, Math.round(acc / (end - start))));
    }
  }
  const out = new Float32Array(dw * dh);
  for (let y = 0; y < dh; y += 1) {
    const [start, end] = vertical[y];
    for (let x = 0; x < dw; x += 1) {
      let acc = 0;
      for (let i = start; i < end; i += 1) acc += tmp[i * dw + x];
      out[y * dw + x] = Math.min(255, Math.max(0, Math.round(acc / (end - start))));
    }
  }
  return out;
}

/** [start, end) input indices per output index for a box filter (Pillow precompute_coeffs, support 0.5). */
function boxCoefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const support = 0.5 * Math.max(scale, 1);
  const result = [];
  for (let i = 0; i < outSize; i += 1) {
    const centre = (i + 0.5) * scale;
    let start = Math.max(0, Math.trunc(centre - support + 0.5));
    let end = Math.min(inSize, Math.trunc(centre + support + 0.5));
    // Keep only the pixels whose centres are inside the box, as Pillow's box filter weights do.
    while (start < end && (start + 0.5 - centre) / Math.max(scale, 1) <= -0.5) start += 1;
    while (end > start && (end - 0.5 - centre) / Math.max(scale, 1) > 0.5) end -= 1;
    if (end <= start) end = Math.min(inSize, start + 1);
    result.push([start, end]);
  }
  return result;
}

/** numpy.percentile (linear interpolation) of 0…255 values, via a histogram. */
function percentiles(values, ...qs) {
  const histogram = new Uint32Array(256);
  for (let i = 0; i < values.length; i += 1) histogram[values[i]] += 1;
  const last = values.length - 1;
  return qs.map((q) => {
    const rank = q * last;
    const lower = Math.floor(rank);
    const a = valueAtRank(histogram, lower);
    const b = valueAtRank(histogram, Math.min(last, lower + 1));
    return a + (b - a) * (rank - lower);
  });
}

function valueAtRank(histogram, rank) {
  let seen = 0;
  for (let level = 0; level < 256; level += 1) {
    seen += histogram[level];
    if (seen > rank) return level;
  }
  return 255;
}

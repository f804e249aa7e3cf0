// The server's rules for a photo's `edits` (`validate_edits`, consultcam/images/processing/edits.py),
// restated for the node tests: `editsProblems(edits)` lists every way a PATCH body's `edits` would be refused
// (422), [] when the server takes it. tests/test_js.py also feeds the model's output to the real
// validate_edits.

const EDIT_KEYS = new Set(["rotation", "crop", "annotations"]);
const CROP_KEYS = ["x", "y", "width", "height"];
const ANNOTATION_KEYS = new Set(["id", "type", "x1", "y1", "x2", "y2", "text", "color"]);
const TYPES = new Set(["arrow", "circle", "text"]);
const MIN_CROP_FRACTION = 0.01;
const MAX_ANNOTATIONS = 50;
const MAX_TEXT_LENGTH = 200;
const EPSILON = 1e-9;

const isFraction = (v) => typeof v === "number" && Number.isFinite(v) && v >= 0 && v <= 1;

/** Every reason validate_edits would refuse `edits`, as short strings naming the field. */
export function editsProblems(edits) {
  const problems = [];
  if (!edits || typeof edits !== "object" || Array.isArray(edits)) return ["edits is not an object"];
  for (const key of Object.keys(edits)) if (!EDIT_KEYS.has(key)) problems.push(`unknown field ${key}`);
  const rotation = edits.rotation ?? 0;
  if (typeof rotation !== "number" || rotation % 90 !== 0) problems.push(`rotation ${rotation}`);
  const { crop } = edits;
  if (crop !== undefined && crop !== null) {
    for (const key of Object.keys(crop)) if (!CROP_KEYS.includes(key)) problems.push(`crop.${key} unknown`);
    for (const key of CROP_KEYS) if (!isFraction(crop[key])) problems.push(`crop.${key} = ${crop[key]}`);
    if (crop.width < MIN_CROP_FRACTION || crop.height < MIN_CROP_FRACTION) problems.push("crop too small");
    if (crop.x + crop.width > 1 + EPSILON || crop.y + crop.height > 1 + EPSILON) problems.push("crop outside");
  }
  const annotations = edits.annotations ?? [];
  if (!Array.isArray(annotations)) return [...problems, "annotations is not a list"];
  if (annotations.length > MAX_ANNOTATIONS) problems.push(`${annotations.length} annotations`);
  annotations.forEach((item, i) => {
    const where = `annotations[${i}]`;
    for (const key of Object.keys(item)) if (!ANNOTATION_KEYS.has(key)) problems.push(`${where}.${key} unknown`);
    if (!TYPES.has(item.type)) problems.push(`${where}.type ${item.type}`);
    if (item.id !== undefined && (typeof item.id !== "string" || item.id.length > 64)) problems.push(`${where}.id`);
    const needsEnd = item.type !== "text";
    for (const key of ["x1", "y1", "x2", "y2"]) {
      if (!needsEnd && (key === "x2" || key === "y2") && item[key] == null) continue;
      if (!isFraction(item[key])) problems.push(`${where}.${key} = ${item[key]}`);
    }
    if (needsEnd && item.x1 === item.x2 && item.y1 === item.y2) problems.push(`${where} has one point`);
    if (item.text !== undefined && (typeof item.text !== "string" || item.text.length > MAX_TEXT_LENGTH)) {
      problems.push(`${where}.text`);
    }
    if (item.type === "text" && !(item.text || "").trim()) problems.push(`${where} has no text`);
    if (item.color !== undefined && !/^#[0-9a-fA-F]{6}$/.test(item.color)) problems.push(`${where}.color`);
  });
  return problems;
}

// Display formats shared by the desktop and phone pages. Dates use en-NZ with month names so that a birth
// date is never ambiguous (12 Mar 1980, not 03/12/1980).

const LOCALE = "en-NZ";
const dateFmt = new Intl.DateTimeFormat(LOCALE, { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });
const timeFmt = new Intl.DateTimeFormat(LOCALE, { hour: "numeric", minute: "2-digit", hour12: true });
const timeSecFmt = new Intl.DateTimeFormat(LOCALE, { hour: "numeric", minute: "2-digit", second: "2-digit", hour12: true });

/** "1980-03-12" → "12 Mar 1980"; a date-only value, so no time-zone shift. */
export function formatBirthDate(iso) {
  if (!iso) return "";
  const [y, m, d] = String(iso).slice(0, 10).split("-").map(Number);
  if (!y || !m || !d) return String(iso);
  return dateFmt.format(new Date(Date.UTC(y, m - 1, d)));
}

/** Age from a birth date: "45 y", or "8 mo" / "12 d" for infants, as GP systems show it. */
export function formatAge(iso, now = new Date()) {
  if (!iso) return "";
  const [y, m, d] = String(iso).slice(0, 10).split("-").map(Number);
  if (!y || !m || !d) return "";
  let years = now.getFullYear() - y;
  let months = now.getMonth() + 1 - m;
  if (now.getDate() < d) months -= 1;
  if (months < 0) { years -= 1; months += 12; }
  if (years >= 2) return `${years} y`;
  const totalMonths = years * 12 + months;
  if (totalMonths >= 1) return `${totalMonths} mo`;
  const days = Math.max(0, Math.floor((now - new Date(y, m - 1, d)) / 86_400_000));
  return `${days} d`;
}

/** "12 Mar 1980 (45 y)" */
export function formatBirthDateWithAge(iso) {
  if (!iso) return "";
  const age = formatAge(iso);
  return age ? `${formatBirthDate(iso)} (${age})` : formatBirthDate(iso);
}

export function formatTime(iso, { seconds = false } = {}) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return (seconds ? timeSecFmt : timeFmt).format(date);
}

/** Milliseconds → "9:05" for countdowns. */
export function formatCountdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const minutes = Math.floor(total / 60);
  return `${minutes}:${String(total % 60).padStart(2, "0")}`;
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/** "body site needed" → "Body site needed". */
export const sentenceCase = (text) => text.charAt(0).toUpperCase() + text.slice(1);

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** A short device name from a User-Agent string: "Chrome on Android", "Safari on iPhone". */
export function describeDevice(userAgent) {
  const ua = String(userAgent || "");
  if (!ua) return "Unknown device";
  let device = "phone";
  if (/iPhone/.test(ua)) device = "iPhone";
  else if (/iPad/.test(ua)) device = "iPad";
  else if (/Android/.test(ua)) device = /Mobile/.test(ua) ? "Android phone" : "Android tablet";
  else if (/Windows/.test(ua)) device = "Windows";
  else if (/Mac OS X|Macintosh/.test(ua)) device = "Mac";
  else if (/Linux/.test(ua)) device = "Linux";
  let browser = "";
  if (/EdgA?\//.test(ua)) browser = "Edge";
  else if (/SamsungBrowser\//.test(ua)) browser = "Samsung Internet";
  else if (/Firefox\/|FxiOS\//.test(ua)) browser = "Firefox";
  else if (/CriOS\/|Chrome\//.test(ua)) browser = "Chrome";
  else if (/Safari\//.test(ua)) browser = "Safari";
  return browser ? `${browser} on ${device}` : device;
}

const ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ"; // 24 letters, no I or O

/**
 * Whether `nhi` is a well-formed New Zealand NHI number with a correct check character, in the original
 * (AAANNNC, mod 11) or new (AAANNAX, mod 23) format. Source: HISO 10046:2023; mirrors consultcam/sessions/nhi.py.
 */
export function isValidNhi(nhi) {
  const value = String(nhi || "").trim().toUpperCase();
  const valueOf = (c) => (/[A-Z]/.test(c) ? ALPHABET.indexOf(c) + 1 : Number(c));
  const weighted = () => [7, 6, 5, 4, 3, 2].reduce((sum, w, i) => sum + valueOf(value[i]) * w, 0);
  if (/^[A-HJ-NP-Z]{3}\d{4}$/.test(value)) {
    const remainder = weighted() % 11;
    return remainder !== 0 && (11 - remainder) % 10 === Number(value[6]);
  }
  if (/^[A-HJ-NP-Z]{3}\d{2}[A-HJ-NP-Z]{2}$/.test(value)) {
    const remainder = weighted() % 23;
    return remainder !== 0 && ALPHABET[23 - remainder - 1] === value[6];
  }
  return false;
}

const WARNING_WORDS = {
  blurry: "May be blurred",
  blur: "May be blurred",
  low_sharpness: "May be blurred",
  lowsharpness: "May be blurred",
  underexposed: "Too dark",
  dark: "Too dark",
  overexposed: "Too bright",
  bright: "Too bright",
  small: "Low resolution",
  low_resolution: "Low resolution",
};

/** A quality warning code from the server ("underexposed") in plain words ("Too dark"). */
export function describeQualityWarning(code) {
  const key = String(code || "").toLowerCase().replace(/[\s-]+/g, "_");
  if (WARNING_WORDS[key]) return WARNING_WORDS[key];
  const words = key.replace(/_/g, " ").trim();
  return words ? words[0].toUpperCase() + words.slice(1) : "";
}

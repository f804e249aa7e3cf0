// The phone's side of pairing: redeem the QR code's token once (POST /api/pair), resume after a page
// reload without spending it again, and explain in plain words why a code cannot be used.

import { ApiError, api } from "./api.js";

const STORAGE_KEY = "consultcam.phone";
const SCAN_AGAIN = "Ask for a new code on the desktop and scan it again.";

const PAIRING_ERRORS = {
  PairingTokenNotFound: {
    icon: "x-circle",
    title: "This code isn't recognised",
    text: "The QR code may have been read wrongly, or it belongs to a session that no longer exists.",
  },
  PairingTokenUsed: {
    icon: "lock",
    title: "This code has already been used",
    text: "Each QR code connects one phone, once, so photos can only go to the patient it was made for.",
  },
  PairingTokenExpired: {
    icon: "clock",
    title: "This code has expired",
    text: "QR codes stop working a few minutes after they are shown, or as soon as a newer code is made.",
  },
  PairingTokenReplaced: {
    icon: "refresh",
    title: "This code was replaced",
    text: "A newer QR code was made on the desktop, so this one stopped working.",
    next: "Scan the code now shown on the desktop.",
  },
  SessionClosed: {
    icon: "info",
    title: "This session has ended",
    text: "The photo session for this patient has been committed or cancelled on the desktop.",
    next: "To take more photos, ask the clinician to start a new session and scan its code.",
  },
};

function readStored() {
  try { return JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null"); } catch { return null; }
}

/**
 * Pair this page with its capture session. Resolves to {session, captureSettings}; throws ApiError.
 * Only the session id and capture settings are kept (sessionStorage, this tab only), so that a reload
 * resumes with the phone cookie instead of spending the already used code. Never photos.
 */
export async function redeem(token) {
  const stored = readStored();
  if (stored?.token === token && stored.sessionId) {
    try {
      return { session: await api.getSession(stored.sessionId), captureSettings: stored.captureSettings };
    } catch (err) {
      if (err instanceof ApiError && err.retryable) throw err;
      forgetPairing();
    }
  }
  const result = await api.pair(token);
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify({
    token, sessionId: result.session.id, captureSettings: result.captureSettings,
  }));
  return { session: result.session, captureSettings: result.captureSettings };
}

export function forgetPairing() {
  sessionStorage.removeItem(STORAGE_KEY);
}

/** {icon, title, text, next, retryable} for a failed redemption, fit for a full-page message. */
export function describePairingError(err) {
  if (err.status === 0) {
    return {
      icon: "wifi-off",
      title: "This phone is offline",
      text: "It could not reach consultcam to check the code. Nothing has been sent.",
      next: "Connect to the practice Wi-Fi, then tap Try again.",
      retryable: true,
    };
  }
  if (err.retryable) {
    return {
      icon: "alert",
      title: "Can't reach consultcam",
      text: err.detail,
      next: "Wait a moment, then tap Try again.",
      retryable: true,
    };
  }
  // 422: the server could not even read it as a code (a truncated or mistyped link).
  const name = PAIRING_ERRORS[err.name] ? err.name
    : { 404: "PairingTokenNotFound", 410: "PairingTokenExpired", 422: "PairingTokenNotFound" }[err.status];
  if (name) return { next: SCAN_AGAIN, ...PAIRING_ERRORS[name], retryable: false };
  return { icon: "x-circle", title: "This code can't be used", text: err.detail, next: SCAN_AGAIN, retryable: false };
}

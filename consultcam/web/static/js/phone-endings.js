// What the phone says when its part is over, with one clear next step each: committed, cancelled, expired,
// signed out from the desktop, and "Not this patient?". By then every photo has been wiped from the phone.

import { plural } from "./format.js";

const NEW_CODE = "To take more photos, ask the clinician for a new code and scan it.";

/**
 * @param {"committed"|"ended"|"revoked"|"wrong-patient"|"paired-elsewhere"} kind
 * @param {{name: string, unsent: number, reason?: string, notified?: boolean}} facts
 *   name: the patient's name; unsent: photos that were still on the phone (now deleted); reason: why the
 *   session ended ("cancelled", "expired", "idle", …); notified: whether the server took the sign-out.
 * @returns {{title: string, text: string, next: string, tone: "ok"|"info"|"warn", icon: string,
 *   badge: string}} badge: a word for the banner ("Committed", "Signed out", "Ended")
 */
export function endingCopy(kind, { name, unsent = 0, reason, notified = true }) {
  const lost = unsent
    ? ` ${plural(unsent, "photo")} not yet sent ${unsent === 1 ? "was" : "were"} deleted from this phone.`
    : "";
  switch (kind) {
    case "committed":
      return {
        title: "Saved to the record",
        text: `The photos are now in ${name}'s record and have been removed from consultcam.${lost}`,
        next: "You're done: hand the phone back to the clinician.",
        tone: "ok", icon: "check-circle", badge: "Committed",
      };
    case "revoked":
      return {
        title: "This phone was signed out",
        text: `The clinician disconnected this phone from ${name}'s session on the desktop.${lost}`,
        next: NEW_CODE,
        tone: "info", icon: "lock", badge: "Signed out",
      };
    case "paired-elsewhere":
      return {
        title: "This phone moved to another session",
        text: `It scanned the code of a different session, so it is no longer connected to ${name}'s session.${lost}`,
        next: "Carry on in the page of the session you scanned last, or ask the clinician for a new code.",
        tone: "info", icon: "info", badge: "Signed out",
      };
    case "wrong-patient":
      return {
        title: "Phone signed out",
        text: `You said this is not ${name}. This phone is no longer connected to their session.${lost || " No photos were left on it."}`
          + (notified ? " The desktop has been told." : " The desktop could not be told: ask the clinician to disconnect the phone there."),
        next: "Ask the clinician to open the right patient on the desktop and show a new code, then scan it.",
        tone: "warn", icon: "user-x", badge: "Signed out",
      };
    default:
      if (reason === "cancelled") {
        return {
          title: "Session cancelled",
          text: `The clinician cancelled this session on the desktop. Its photos were deleted and nothing was saved to the record.${lost}`,
          next: NEW_CODE,
          tone: "info", icon: "info", badge: "Cancelled",
        };
      }
      return {
        title: "This session has ended",
        text: (reason ? "It was closed after a period with no activity." : "It was closed on the desktop.") + lost,
        next: NEW_CODE,
        tone: "info", icon: "clock", badge: "Ended",
      };
  }
}

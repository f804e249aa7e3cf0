// The desktop's "Sign out": ends this computer's sign-in on the server (POST /logout through api.js, so
// the same headers as every other call), then shows the sign-in page, or, after a sign-in through the
// practice's identity provider, goes where the server says ({"redirect": url}: the provider's end-session
// page, RP-Initiated Logout). A copy of the sign-in cookie taken before stops working too; without this
// script the form posts to /logout itself.

import { ApiError, api } from "./api.js";
import { announce } from "./dom.js";

/** Wire the sign-out `form` (its one submit button); `onSignedOut` runs before the page leaves. */
export function wireSignOut(form, { onSignedOut } = {}) {
  if (!form) return;
  const button = form.querySelector("button[type=submit]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    try {
      const answer = await api.signOut();
      onSignedOut?.();
      announce("Signed out.");
      window.location.replace(answer?.redirect || "/"); // the provider's end-session page, or sign-in
    } catch (err) {
      button.disabled = false;
      announce(err instanceof ApiError ? err.detail : "Could not sign out. Try again.");
    }
  });
}

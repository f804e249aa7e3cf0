// The desktop's "Sign out": ends this computer's sign-in on the server (POST /logout through api.js, so
// the same headers as every other call), then shows the sign-in page. A copy of the sign-in cookie taken
// before stops working too; without this script the form posts to /logout itself.

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
      await api.signOut();
      onSignedOut?.();
      announce("Signed out.");
      window.location.replace("/"); // the sign-in page
    } catch (err) {
      button.disabled = false;
      announce(err instanceof ApiError ? err.detail : "Could not sign out. Try again.");
    }
  });
}

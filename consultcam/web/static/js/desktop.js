// The desktop page's entry point: `/` shows the start form (start-form.js); `/sessions/{id}` shows the
// session page (desktop-session.js): the patient banner, the phone panel, consent, the live gallery with
// its details panel, uploads from this computer, and commit. State comes from GET /api/sessions/{id};
// changes arrive over SSE.

import { sessionPage } from "./desktop-session.js";
import { $, readPageData } from "./dom.js";
import { wireSignOut } from "./sign-out.js";
import { startForm } from "./start-form.js";

const page = readPageData();
const config = { maxImages: 50, warnImages: 20, ...(page.config || {}) };
window.__consultcam = { events: null };

wireSignOut($("#sign-out-form"), { onSignedOut: () => window.__consultcam.events?.close() });
if (page.sessionId) sessionPage(page.sessionId, config);
else startForm(page.launch || {});

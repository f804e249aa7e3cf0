// The start form on `/` (embedded mode): patient name, NHI, birth date, encounter id; prefilled from an EMR
// launch's query parameters, and submitted by itself when the launch names the encounter and the patient.

import { ApiError, api } from "./api.js";
import { $, setText, show } from "./dom.js";
import { isValidNhi } from "./format.js";

export const PAIRING_STASH = "consultcam.newSession";

// What the server accepts (consultcam/sessions/schemas.py), checked here first so the GP sees it at once;
// anything else the server refuses comes back as its own message under the form.
const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/; // FHIR R4 id: what the record can reference
const OLDEST_AGE_YEARS = 130;
const NAME_MAX_LENGTH = 200;

function isoDate(date) {
  return `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, "0")}-${String(date.getDate()).padStart(2, "0")}`;
}

function today() {
  return isoDate(new Date());
}

/** 1 January of the year OLDEST_AGE_YEARS ago: an earlier birth date is a typo for the century. */
function earliestBirthDate() {
  return `${new Date().getFullYear() - OLDEST_AGE_YEARS}-01-01`;
}

function makeEncounterId() {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").slice(0, 13); // 20250101T1042
  return `consult-${stamp}-${crypto.randomUUID().slice(0, 6)}`;
}

function fieldError(input, message) {
  const error = document.getElementById(`${input.id}-error`);
  input.setAttribute("aria-invalid", message ? "true" : "false");
  setText(error, message || "");
  show(error, Boolean(message));
}

export function startForm(launch) {
  const form = $("#start-form");
  const name = $("#f-name");
  const nhi = $("#f-nhi");
  const dob = $("#f-dob");
  const encounter = $("#f-encounter");
  const submit = $("#start-btn");
  const formError = $("#start-error");
  dob.max = today();
  dob.min = earliestBirthDate();

  name.value = launch.patientName || "";
  nhi.value = (launch.nhi || "").toUpperCase();
  dob.value = launch.birthDate || "";
  encounter.value = launch.encounterId || "";
  nhi.addEventListener("input", () => { nhi.value = nhi.value.toUpperCase().replace(/\s+/g, ""); });
  for (const input of [name, nhi, dob]) input.addEventListener("input", () => fieldError(input, ""));
  encounter.addEventListener("input", () => encounter.setAttribute("aria-invalid", "false"));

  function validate() {
    let firstBad = null;
    const bad = (input, message) => { fieldError(input, message); firstBad ||= input; };
    if (!name.value.trim()) bad(name, "Enter the patient's name.");
    else if (name.value.trim().length > NAME_MAX_LENGTH) bad(name, `The name is longer than ${NAME_MAX_LENGTH} characters.`);
    else fieldError(name, "");
    const nhiValue = nhi.value.trim().toUpperCase();
    if (nhiValue && !isValidNhi(nhiValue)) {
      bad(nhi, `${nhiValue} is not a valid NHI number: check each character against the patient's record.`);
    } else fieldError(nhi, "");
    if (dob.value && dob.value > today()) bad(dob, "The date of birth is in the future.");
    else if (dob.value && dob.value < earliestBirthDate()) {
      bad(dob, `The date of birth is more than ${OLDEST_AGE_YEARS} years ago: check the year.`);
    } else fieldError(dob, "");
    const encounterId = encounter.value.trim();
    const badEncounter = Boolean(encounterId) && !FHIR_ID.test(encounterId);
    encounter.setAttribute("aria-invalid", badEncounter ? "true" : "false");
    if (badEncounter) {
      // The encounter field has no error line of its own: the form's message says it.
      setText(formError, `The encounter ID ${encounterId} cannot go into the patient record: use 1 to 64 letters, digits, "-" or "." as your practice system shows it, or leave it blank.`);
      show(formError, true);
      firstBad ||= encounter;
    }
    return firstBad;
  }

  async function start() {
    show(formError, false);
    const firstBad = validate();
    if (firstBad) {
      setText($("#launch-notice"), "Opened from your practice system. Check the details marked below, then start the session.");
      firstBad.focus();
      return;
    }
    const nhiValue = nhi.value.trim().toUpperCase();
    const patient = {
      id: launch.patientId || nhiValue || `local-${crypto.randomUUID()}`,
      name: name.value.trim(),
    };
    if (nhiValue) patient.nhi = nhiValue;
    if (dob.value) patient.birthDate = dob.value;
    const body = { encounterId: encounter.value.trim() || makeEncounterId(), patient };
    if (launch.practitionerId) body.practitionerId = launch.practitionerId;
    if (launch.facilityId) body.facilityId = launch.facilityId;

    submit.disabled = true;
    submit.textContent = "Starting…";
    try {
      const session = await api.createSession(body);
      // Hand the fresh QR code to the session page so it need not make another one.
      if (session.pairing) {
        sessionStorage.setItem(PAIRING_STASH, JSON.stringify({ sessionId: session.id, pairing: session.pairing }));
      }
      window.location.assign(`/sessions/${encodeURIComponent(session.id)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        window.location.reload();
        return;
      }
      setText(formError, err instanceof ApiError ? err.detail : "The session could not be started.");
      show(formError, true);
      submit.disabled = false;
      submit.textContent = "Start session";
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    start();
  });

  if (launch.encounterId && launch.patientName) {
    const notice = $("#launch-notice");
    setText(notice, `Opened from your practice system: starting the session for ${launch.patientName}…`);
    show(notice, true);
    start();
  } else {
    (name.value ? nhi : name).focus();
  }
}

// The desktop's phone panel: the pairing QR code with its countdown, "New code", the link as text, and
// the phone's status ("Waiting for phone…" / "Phone connected · Chrome on Android · 10:42 am") with
// "Sign phone out" while one is connected.

import { $, announce, setText, show } from "./dom.js";
import { describeDevice, formatCountdown, formatTime } from "./format.js";

const SOON_MS = 60_000;

/** Parse the server's QR SVG and keep only inert SVG (no scripts, handlers or foreign content). The HTML
 *  parser is used because segno's inline SVG has no xmlns; nothing in a DOMParser document runs. */
function safeSvg(markup) {
  const doc = new DOMParser().parseFromString(String(markup || ""), "text/html");
  const svg = doc.querySelector("svg");
  if (!svg) return null;
  for (const node of svg.querySelectorAll("script, foreignObject, iframe, a, style")) node.remove();
  for (const node of [svg, ...svg.querySelectorAll("*")]) {
    for (const attr of [...node.attributes]) {
      if (/^on/i.test(attr.name) || attr.name === "style" || /javascript:/i.test(attr.value)) node.removeAttribute(attr.name);
    }
  }
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  return document.importNode(svg, true);
}

export class QrPanel {
  /** @param {{onNewCode: () => void, onRevoke: () => void}} actions */
  constructor({ onNewCode, onRevoke }) {
    this.panel = $("#qr-panel");
    this.code = $("#qr-code");
    this.overlay = $("#qr-overlay");
    this.countdown = $("#qr-countdown");
    this.url = $("#qr-url");
    this.newBtn = $("#qr-new");
    this.copyBtn = $("#qr-copy");
    this.status = $("#phone-status");
    this.statusText = this.status.querySelector(".phone-status-text");
    this.connected = $("#phone-connected");
    this.timer = null;
    this.expiresAt = 0;
    this.newBtn.addEventListener("click", () => onNewCode());
    $("#pair-another").addEventListener("click", () => onNewCode());
    $("#revoke-phone").addEventListener("click", () => onRevoke());
    this.copyBtn.addEventListener("click", () => this.copy());
  }

  setState(state) {
    this.panel.dataset.state = state;
  }

  loading() {
    this.stopTimer();
    this.setState("loading");
    show(this.panel, true);
    this.newBtn.disabled = true;
    setText(this.countdown, "Making a code…");
  }

  /** Show a fresh pairing `{url, expiresAt, qrSvg}`. */
  showPairing(pairing) {
    this.stopTimer();
    const svg = safeSvg(pairing.qrSvg);
    this.code.replaceChildren(...(svg ? [svg] : []));
    setText(this.url, pairing.url);
    this.url.title = pairing.url;
    this.expiresAt = Date.parse(pairing.expiresAt);
    show(this.overlay, false);
    show(this.panel, true);
    show(this.connected, false);
    this.newBtn.disabled = false;
    this.newBtn.classList.replace("btn-primary", "btn-secondary");
    this.setState("active");
    this.tick();
    this.timer = setInterval(() => this.tick(), 1000);
  }

  tick() {
    const left = this.expiresAt - Date.now();
    if (!(left > 0)) {
      this.expire();
      return;
    }
    this.countdown.dataset.soon = left <= SOON_MS ? "true" : "false";
    setText(this.countdown, `Code expires in ${formatCountdown(left)}`);
  }

  expire() {
    this.stopTimer();
    this.setState("expired");
    show(this.overlay, true);
    setText(this.countdown, "Choose “New code” to pair a phone.");
    this.countdown.dataset.soon = "true";
    this.newBtn.classList.replace("btn-secondary", "btn-primary");
    announce("The pairing code expired. Choose New code to make another.");
  }

  error(detail) {
    this.stopTimer();
    this.setState("error");
    this.code.replaceChildren();
    setText(this.countdown, detail);
    this.newBtn.disabled = false;
  }

  /** No phone: show the waiting status (and the QR panel). */
  waiting() {
    this.status.dataset.state = "waiting";
    setText(this.statusText, "Waiting for phone…");
    show(this.connected, false);
  }

  /** The phone was signed out (`reason` "revoked" by this desktop, "wrong-patient" by the phone itself,
   *  "paired-elsewhere" when it scanned another session's code). */
  signedOut(reason) {
    const words = {
      "wrong-patient": "Phone signed out: not this patient",
      "paired-elsewhere": "Phone signed out: paired with another session",
    };
    this.status.dataset.state = words[reason] ? "alert" : "signed-out";
    setText(this.statusText, words[reason] || "Phone signed out");
    show(this.connected, false);
  }

  /** No code on show (after "Not this patient?"): the clinician decides whether to pair again. */
  idle(message) {
    this.stopTimer();
    this.setState("idle");
    this.code.replaceChildren();
    show(this.panel, true);
    show(this.overlay, false);
    this.newBtn.disabled = false;
    this.newBtn.classList.replace("btn-secondary", "btn-primary");
    setText(this.countdown, message);
  }

  /** A phone `{id, userAgent, pairedAt}` is connected: the code was used, so hide it. */
  phoneConnected(phone) {
    this.stopTimer();
    this.status.dataset.state = "connected";
    setText(this.statusText, `Phone connected · ${describeDevice(phone.userAgent)} · ${formatTime(phone.pairedAt)}`);
    show(this.panel, false);
    show(this.connected, true);
    this.setState("used");
  }

  /** Session over: no pairing possible. */
  disable() {
    this.stopTimer();
    show(this.panel, false);
    show(this.connected, false);
    this.status.dataset.state = "ended";
    setText(this.statusText, "Session ended");
  }

  async copy() {
    const text = this.url.textContent;
    try {
      await navigator.clipboard.writeText(text);
      announce("Pairing link copied.");
      this.copyBtn.dataset.copied = "true";
      setTimeout(() => { delete this.copyBtn.dataset.copied; }, 1500);
    } catch {
      const range = document.createRange();
      range.selectNodeContents(this.url);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
  }

  stopTimer() {
    clearInterval(this.timer);
    this.timer = null;
  }
}

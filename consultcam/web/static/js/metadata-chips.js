// Quick chips for a photo's coded metadata (laterality, body site, view) and its free label: the same control on
// the phone's review screen and in the desktop's metadata editor.
//
// The choices and every word shown for them come from GET /api/terminology/body-sites (SNOMED CT concept ids with
// their preferred terms and short names, kept in consultcam/data/body-sites.json): the page keeps no words of its
// own. Chips are toggle buttons (aria-pressed) in groups with a roving tab stop: Tab enters a group, the arrow keys
// move within it, Space or Enter chooses, choosing the pressed chip again clears it.

import { api } from "./api.js";
import { h } from "./dom.js";

/** Stands for "the selected photos differ" in a field of `value` (desktop multi-select). */
export const MIXED = Symbol("mixed");

const COMPACT_SITES = 8; // body-site chips shown before "All sites" on a phone

let terminologyPromise = null;

/**
 * The curated lists with the words to show, fetched once per page: {source, bodySites: [{system, code, display,
 * label}], laterality: [{value, display}], views: [{value, display}]} (`label` is a site's short name, the one
 * the pages show). A failed fetch is not cached (try again later).
 */
export function loadTerminology() {
  if (!terminologyPromise) {
    terminologyPromise = api.bodySites().catch((err) => {
      terminologyPromise = null;
      throw err;
    });
  }
  return terminologyPromise;
}

/**
 * A side's words before a site's short name, both as the server sends them: ("Left", "Forearm") → "Left forearm";
 * an abbreviation keeps its capitals ("MCP joint"). The same rule as consultcam/terminology/words.py `with_side`,
 * which makes an image's `words.place`; used here only for photos still on the phone.
 */
export function withSide(side, site) {
  const rest = /^.[a-z]/.test(site) ? site.charAt(0).toLowerCase() + site.slice(1) : site;
  return `${side} ${rest}`;
}

/**
 * One line describing a photo's metadata, as a clinician would say it: "Left forearm · Close-up · Lesion A".
 * The words are the server's: an image's `words` ({place, view}, from the API) when given, else looked up in
 * `terminology` (GET /api/terminology/body-sites) for a photo still on the phone; fields missing are left out.
 */
export function summarise(metadata, terminology = null, words = null) {
  const m = metadata || {};
  if (words) return [words.place, words.view, m.label].filter(Boolean).join(" · ");
  const side = m.laterality && m.laterality !== "not-applicable"
    ? findByValue(terminology?.laterality, m.laterality)?.display || ""
    : "";
  const site = m.bodySite ? (terminology?.bodySites || []).find((item) => item.code === m.bodySite.code)?.label || "" : "";
  const where = side && site ? withSide(side, site) : side || site;
  const view = m.view ? findByValue(terminology?.views, m.view)?.display || "" : "";
  return [where, view, m.label].filter(Boolean).join(" · ");
}

/** Words for the image metadata fields a session may require (`requiredMetadata`), as pages say them. */
export const FIELD_WORDS = { bodySite: "body site", laterality: "side", view: "view", label: "label" };

/**
 * The fields of `required` (e.g. ["bodySite"]) that `item.metadata` lacks; `item` is a server image or a
 * photo still on the phone. A body site counts only with its SNOMED CT code; text only when not blank.
 */
export function missingFields(item, required) {
  const metadata = item?.metadata || {};
  return (required || []).filter((field) => {
    const value = metadata[field];
    if (field === "bodySite") return !value?.code;
    return value === undefined || value === null || String(value).trim() === "";
  });
}

/**
 * What a set of photos lacks before commit: `gaps` [{item, fields}] for each photo missing something (in the
 * given order) and `fields`, every field missing from any of them, once each.
 */
export function metadataGaps(items, required) {
  const gaps = items.map((item) => ({ item, fields: missingFields(item, required) })).filter((g) => g.fields.length);
  return { gaps, fields: [...new Set(gaps.flatMap((gap) => gap.fields))] };
}

/** ["bodySite"] → "body site"; ["bodySite", "view"] → "body site and view"; three → "side, view and label". */
export function listFields(fields) {
  const words = fields.map((field) => FIELD_WORDS[field] || field);
  if (words.length <= 1) return words.join("");
  return `${words.slice(0, -1).join(", ")} and ${words.at(-1)}`;
}

function findByValue(list, value) {
  return (list || []).find((item) => item.value === value) || null;
}

let instances = 0;

/**
 * The chip editor. `new MetadataChips({terminology, idPrefix, search, compact, onChange})`; put `.element` in
 * the page. `onChange(patch)` gets only the field that changed: `{laterality: "left"}`, `{bodySite: {system,
 * code, display}}`, `{view: "close-up"}`, `{label: "Lesion A"}`, or the field with `null` when cleared.
 * `search: true` adds a search box over the body sites (desktop); `compact: true` shows the first sites and an
 * "All sites" toggle (phone).
 */
export class MetadataChips {
  constructor({ terminology, idPrefix = null, search = false, compact = false, onChange = () => {} }) {
    this.terminology = terminology;
    this.onChange = onChange;
    this.compact = compact;
    this.prefix = idPrefix || `mchips-${(instances += 1)}`;
    this.state = { bodySite: null, laterality: null, view: null, label: null };
    this.expanded = false;
    this.query = "";

    this.lateralityGroup = this.#group("laterality", "Side",
      terminology.laterality.map((item) => ({ key: item.value, text: item.display, value: item.value })));
    this.siteChips = terminology.bodySites.map((site) => ({
      key: site.code, text: site.label, title: site.display, // the server's short name and the record's term
      value: { system: site.system, code: site.code, display: site.display }, // a FHIR Coding: no chip word
    }));
    this.siteGroup = this.#group("bodySite", "Body site", this.siteChips);
    this.viewGroup = this.#group("view", "View",
      terminology.views.map((item) => ({ key: item.value, text: item.display, value: item.value })));

    this.searchInput = search
      ? h("input", {
        type: "search", class: "mchips-search", id: `${this.prefix}-site-search`, autocomplete: "off",
        placeholder: "Search body sites", "aria-label": "Search body sites",
        "aria-controls": `${this.prefix}-bodySite-chips`,
        oninput: () => { this.query = this.searchInput.value; this.#filterSites(); },
        onkeydown: (event) => this.#searchKey(event),
      })
      : null;
    this.noMatch = h("p", { class: "mchips-nomatch", hidden: true, role: "status" });
    this.moreButton = compact
      ? h("button", {
        type: "button", class: "mchips-more", "aria-expanded": "false",
        "aria-controls": `${this.prefix}-bodySite-chips`,
        onclick: () => { this.expanded = !this.expanded; this.#filterSites(); },
      }, "All sites")
      : null;
    if (this.searchInput) this.siteGroup.legend.after(this.searchInput);
    this.siteGroup.chips.after(this.noMatch);
    if (this.moreButton) this.siteGroup.chips.after(this.moreButton);

    this.labelInput = h("input", {
      type: "text", class: "mchips-label-input", id: `${this.prefix}-label`, maxlength: 120,
      autocomplete: "off", enterkeyhint: "done", placeholder: "e.g. Lesion A, before treatment",
      onchange: () => this.#emit("label", this.labelInput.value.trim() || null),
    });
    const labelField = h("div", { class: "mchips-field mchips-label" },
      h("label", { class: "mchips-legend", for: `${this.prefix}-label` }, "Label"),
      this.labelInput);

    this.element = h("div", { class: `mchips${compact ? " mchips-compact" : ""}` },
      this.lateralityGroup.root, this.siteGroup.root, this.viewGroup.root, labelField);
    this.#render();
  }

  /** The fields that are set: {bodySite?, laterality?, view?, label?}. */
  get value() {
    const out = {};
    for (const [key, value] of Object.entries(this.state)) {
      if (value !== null && value !== MIXED) out[key] = value;
    }
    return out;
  }

  /** Show `metadata` without calling onChange; a field may be MIXED (the selected photos differ). */
  set value(metadata) {
    const m = metadata || {};
    this.state = {
      bodySite: m.bodySite ?? null,
      laterality: m.laterality ?? null,
      view: m.view ?? null,
      label: m.label ?? null,
    };
    this.#render();
  }

  /** Turn every control on or off (e.g. while saving, or once the session is committed). */
  set disabled(flag) {
    for (const control of this.element.querySelectorAll("button, input")) control.disabled = Boolean(flag);
  }

  #group(field, legendText, chips) {
    const legendId = `${this.prefix}-${field}-legend`;
    const legend = h("p", { class: "mchips-legend", id: legendId }, legendText);
    const mixedNote = h("span", { class: "mchips-mixed", hidden: true }, "Mixed");
    legend.append(" ", mixedNote);
    const buttons = chips.map((chip) => h("button", {
      type: "button", class: "chip", title: chip.title || null, "aria-pressed": "false", tabindex: "-1",
      dataset: { key: chip.key },
      onclick: () => this.#choose(field, chip),
      onkeydown: (event) => this.#chipKey(event, field),
    }, chip.text));
    const list = h("div", {
      class: "mchips-chips", id: `${this.prefix}-${field}-chips`, role: "group", "aria-labelledby": legendId,
    }, buttons);
    const root = h("div", { class: `mchips-field mchips-${field}` }, legend, list);
    return { root, legend, chips: list, buttons, mixedNote, items: chips };
  }

  #choose(field, chip) {
    const current = this.state[field];
    const same = current !== null && current !== MIXED && keyOf(field, current) === chip.key;
    this.#emit(field, same ? null : chip.value);
    const group = this.#groupOf(field);
    group.buttons.find((b) => b.dataset.key === chip.key)?.focus();
  }

  #emit(field, value) {
    this.state[field] = value;
    this.#render();
    this.onChange({ [field]: value });
  }

  #groupOf(field) {
    return { laterality: this.lateralityGroup, bodySite: this.siteGroup, view: this.viewGroup }[field];
  }

  #chipKey(event, field) {
    const keys = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1, Home: "first", End: "last" };
    if (!(event.key in keys)) return;
    const visible = this.#groupOf(field).buttons.filter((b) => !b.hidden);
    const at = visible.indexOf(event.target);
    const step = keys[event.key];
    let next;
    if (step === "first") next = 0;
    else if (step === "last") next = visible.length - 1;
    else next = (at + step + visible.length) % visible.length;
    event.preventDefault();
    this.#setTabStop(visible, visible[next]);
    visible[next]?.focus();
  }

  #searchKey(event) {
    if (event.key === "Enter") {
      event.preventDefault();
      const first = this.siteGroup.buttons.find((b) => !b.hidden);
      if (first) first.click();
    } else if (event.key === "ArrowDown") {
      const first = this.siteGroup.buttons.find((b) => !b.hidden);
      if (first) { event.preventDefault(); this.#setTabStop(this.siteGroup.buttons, first); first.focus(); }
    }
  }

  #setTabStop(buttons, target) {
    for (const button of buttons) button.tabIndex = button === target ? 0 : -1;
  }

  #filterSites() {
    const words = this.query.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const chosen = this.state.bodySite && this.state.bodySite !== MIXED ? this.state.bodySite.code : null;
    let shown = 0;
    this.siteGroup.buttons.forEach((button, i) => {
      const item = this.siteGroup.items[i];
      const haystack = `${item.text} ${item.title}`.toLowerCase();
      let visible = words.every((word) => haystack.includes(word));
      if (this.compact && !this.expanded && !words.length) visible = i < COMPACT_SITES || item.key === chosen;
      button.hidden = !visible;
      if (visible) shown += 1;
    });
    this.noMatch.hidden = shown > 0;
    this.noMatch.textContent = shown ? "" : `No body site matches “${this.query.trim()}”.`;
    if (this.moreButton) {
      this.moreButton.setAttribute("aria-expanded", String(this.expanded));
      this.moreButton.textContent = this.expanded ? "Fewer sites" : `All ${this.siteChips.length} sites`;
    }
    this.#rovingStops();
  }

  #rovingStops() {
    for (const group of [this.lateralityGroup, this.siteGroup, this.viewGroup]) {
      const visible = group.buttons.filter((b) => !b.hidden);
      const pressed = visible.find((b) => b.getAttribute("aria-pressed") === "true");
      this.#setTabStop(group.buttons, pressed || visible[0]);
    }
  }

  #render() {
    for (const field of ["laterality", "bodySite", "view"]) {
      const group = this.#groupOf(field);
      const current = this.state[field];
      const key = current === null || current === MIXED ? null : keyOf(field, current);
      for (const button of group.buttons) button.setAttribute("aria-pressed", String(button.dataset.key === key));
      group.mixedNote.hidden = current !== MIXED;
    }
    const label = this.state.label;
    this.labelInput.value = label === MIXED || label === null ? "" : label;
    this.labelInput.placeholder = label === MIXED ? "Mixed: type to give all the same label"
      : "e.g. Lesion A, before treatment";
    this.#filterSites();
  }
}

function keyOf(field, value) {
  return field === "bodySite" ? value.code : value;
}

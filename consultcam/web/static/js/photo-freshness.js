// Which news of a photo is newest, on the desktop page (pure, no DOM). A session snapshot (GET
// /api/sessions/{id}) fetched while newer news of a photo arrived must not put the older state back: each
// change seen (an event, or the page's own save or delete) is stamped with a rising number, and a
// snapshot is reconciled against the stamps as they were when it was asked for.

export class PhotoFreshness {
  constructor() {
    this.seq = 0;
    this.stamps = new Map(); // image id → seq of the last change seen
  }

  /** A change to photo `imageId` was just seen (it was added, updated or deleted). */
  stamp(imageId) {
    this.stamps.set(imageId, ++this.seq);
  }

  /** A ticket for a snapshot about to be asked for: changes stamped after it are newer than the snapshot. */
  ticket() {
    return this.seq;
  }

  /** Whether a change to `imageId` was seen after `ticket`. */
  newerThan(imageId, ticket) {
    return (this.stamps.get(imageId) ?? 0) > ticket;
  }
}

/**
 * Reconcile a snapshot's photos with the photos shown.
 * @param {object[]} snapshot  the photos in the snapshot (API images)
 * @param {Map<string, object>} shown  the photos the page shows, by id
 * @param {(imageId: string) => boolean} newer  whether a change to a photo was seen after the snapshot
 *   was asked for
 * @param {boolean} ended  the session has ended on this page (its photos stay as they are)
 * @returns {{remove: string[], images: object[]}} `remove`: shown photos the snapshot no longer has and
 *   nothing newer says exist; `images`: the snapshot's photos to show, where a photo seen since keeps the
 *   state shown (with the snapshot's fresh URLs) and one deleted since stays deleted
 */
export function reconcileSnapshot(snapshot, shown, newer, ended) {
  const ids = new Set(snapshot.map((image) => image.id));
  const remove = ended ? [] : [...shown.keys()].filter((id) => !ids.has(id) && !newer(id));
  const images = snapshot
    .filter((image) => !newer(image.id) || shown.has(image.id)) // deleted since: stays deleted
    .map((image) => (newer(image.id) ? { ...shown.get(image.id), urls: image.urls } : image));
  return { remove, images };
}

// Photos not yet uploaded, kept in this browser's IndexedDB so a reload (or the phone killing the tab in the
// background) does not lose them. Only the resized, EXIF-free JPEG and its details are kept, never the camera
// original, and only until the photo is uploaded: a record is deleted as soon as its upload is registered, and
// every record of the session is wiped on commit, session end or expiry, "Not this patient?" and sign-out.
// Anything left behind (a tab closed and never reopened) is purged after RETENTION_MS, the server's own cap on
// a temporary copy. No service worker, no Cache Storage.
//
// Two object stores keep the big JPEG apart from the small, often-changed details:
//   blobs:  {id, sessionId, bytes: ArrayBuffer, type, savedAt}   (earlier: {id, sessionId, blob, savedAt})
//   photos: {id, sessionId, seq, capturedAt, filename, width, height, metadata, check, queued, imageId, savedAt}
// The JPEG is stored as bytes, not as a Blob: WebKit refuses Blobs in IndexedDB in a private window
// ("UnknownError: Error preparing Blob/File data") while it stores an ArrayBuffer like any other value.
// Records written as Blobs by an earlier version are still read.
// Every call resolves even when IndexedDB is unavailable (private mode, quota): the page then keeps photos in
// memory only, `available` says so, and the console says why (the failing request's own error).

const DB_NAME = "consultcam-phone";
const DB_VERSION = 1;
/** CONSULTCAM_RETENTION_HOURS default (24 h): nothing temporary outlives it, here either. */
export const RETENTION_MS = 24 * 60 * 60 * 1000;

let dbPromise = null;

function openDb() {
  if (dbPromise) return dbPromise;
  dbPromise = new Promise((resolve, reject) => {
    if (typeof indexedDB === "undefined") {
      reject(new Error("IndexedDB is not available"));
      return;
    }
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      for (const name of ["photos", "blobs"]) {
        if (!db.objectStoreNames.contains(name)) {
          db.createObjectStore(name, { keyPath: "id" }).createIndex("sessionId", "sessionId");
        }
      }
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error("IndexedDB is blocked by another tab"));
  });
  dbPromise.catch(() => { dbPromise = null; });
  return dbPromise;
}

/**
 * Run `work(stores)` in one transaction over photos and blobs; resolves with its result when committed.
 * Rejects with the error of the first request that failed (its `error` event bubbles to the transaction,
 * IndexedDB §5.2): that error says what went wrong, where the transaction's own `error` may still be null.
 * It rejects at once: after refusing a Blob, WebKit neither commits nor aborts the transaction.
 */
async function transaction(mode, work) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(["photos", "blobs"], mode);
    let result;
    tx.oncomplete = () => resolve(result);
    tx.onerror = (event) => {
      reject(event.target?.error || tx.error || new Error("IndexedDB request failed"));
      try { tx.abort(); } catch { /* already finished */ }
    };
    tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
    Promise.resolve(work({ photos: tx.objectStore("photos"), blobs: tx.objectStore("blobs") }))
      .then((value) => { result = value; })
      .catch((err) => { try { tx.abort(); } catch { /* already finished */ } reject(err); });
  });
}

const wrap = (request) => new Promise((resolve, reject) => {
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});

/** The fields of a page photo that are kept (see the header for the shape). */
function toRecord(sessionId, photo) {
  return {
    id: photo.id,
    sessionId,
    seq: photo.seq,
    capturedAt: photo.capturedAt,
    filename: photo.filename || null,
    width: photo.width || 0,
    height: photo.height || 0,
    metadata: photo.metadata || {},
    check: photo.check || null,
    queued: Boolean(photo.queued),
    imageId: photo.imageId || null,
    savedAt: Date.now(),
  };
}

/** A kept JPEG as a Blob: from its bytes, or as an earlier version kept it; null when neither is there. */
function toBlob(file) {
  if (file?.bytes instanceof ArrayBuffer && file.bytes.byteLength > 0) {
    return new Blob([file.bytes], { type: file.type || "image/jpeg" });
  }
  return file?.blob instanceof Blob ? file.blob : null;
}

/** "UnknownError: Error preparing Blob/File data": the DOMException's name and message, for the console. */
function describeError(err) {
  if (!err) return "unknown error";
  return err.name && err.message ? `${err.name}: ${err.message}` : String(err.message || err.name || err);
}

/** One capture session's unsent photos on this phone. */
export class PhotoStore {
  /** @param {string} sessionId the capture session id (records are keyed by it) */
  constructor(sessionId) {
    this.sessionId = sessionId;
    this.available = typeof indexedDB !== "undefined";
    this.closed = false;
  }

  async #safely(mode, work, fallback) {
    if (!this.available || this.closed) return fallback;
    try {
      return await transaction(mode, work);
    } catch (err) {
      this.available = false;
      console.warn(`consultcam: photos are kept in memory only (IndexedDB: ${describeError(err)})`);
      return fallback;
    }
  }

  /** Keep (or replace, after a retake) a photo and its JPEG. `photo.blob` must be set. */
  async save(photo) {
    if (!this.available || this.closed) return false;
    // Read before the transaction opens: it would commit itself while we wait for the bytes.
    let bytes;
    try {
      bytes = await photo.blob.arrayBuffer();
    } catch (err) {
      console.warn(`consultcam: this photo is kept in memory only (${describeError(err)})`);
      return false;
    }
    const type = photo.blob.type || "image/jpeg";
    return this.#safely("readwrite", ({ photos, blobs }) => {
      photos.put(toRecord(this.sessionId, photo));
      blobs.put({ id: photo.id, sessionId: this.sessionId, bytes, type, savedAt: Date.now() });
      return true;
    }, false);
  }

  /** Update a kept photo's details (metadata, queued, imageId) without touching its JPEG. */
  update(photo) {
    return this.#safely("readwrite", async ({ photos }) => {
      const existing = await wrap(photos.get(photo.id));
      if (existing) photos.put({ ...toRecord(this.sessionId, photo), savedAt: existing.savedAt });
    }, false);
  }

  /** Forget one photo (uploaded or deleted). */
  remove(id) {
    return this.#safely("readwrite", ({ photos, blobs }) => {
      photos.delete(id);
      blobs.delete(id);
    }, false);
  }

  /**
   * This session's kept photos, oldest first, each with its `blob` (made again from the kept bytes, or the
   * Blob an earlier version kept). Records whose JPEG went missing are dropped.
   * @returns {Promise<Array<object>>}
   */
  load() {
    return this.#safely("readonly", async ({ photos, blobs }) => {
      const records = await wrap(photos.index("sessionId").getAll(this.sessionId));
      const files = await wrap(blobs.index("sessionId").getAll(this.sessionId));
      const byId = new Map(files.map((file) => [file.id, toBlob(file)]));
      return records
        .filter((record) => byId.get(record.id))
        .map((record) => ({ ...record, blob: byId.get(record.id) }))
        .sort((a, b) => a.seq - b.seq);
    }, []);
  }

  /** Wipe every photo of this session from the phone; nothing is written after this. */
  clear() {
    this.closed = true;
    return wipeSession(this.sessionId);
  }
}

/** Delete every kept photo of `sessionId`; resolves whatever happens. */
export async function wipeSession(sessionId) {
  try {
    await transaction("readwrite", async ({ photos, blobs }) => {
      for (const store of [photos, blobs]) {
        const keys = await wrap(store.index("sessionId").getAllKeys(sessionId));
        for (const key of keys) store.delete(key);
      }
    });
  } catch {
    // Nothing kept, or IndexedDB unavailable: nothing to wipe.
  }
}

/** Delete photos kept longer than `maxAgeMs` from any session (tabs closed and never reopened). */
export async function purgeStale(maxAgeMs = RETENTION_MS) {
  const cutoff = Date.now() - maxAgeMs;
  try {
    await transaction("readwrite", async ({ photos, blobs }) => {
      for (const store of [photos, blobs]) {
        const all = await wrap(store.getAll());
        for (const record of all) if (!(record.savedAt >= cutoff)) store.delete(record.id);
      }
    });
  } catch {
    // As above: best effort.
  }
}

"""Clinical photo processing, one concern per module; nothing here touches storage or the database.

- `formats`: the accepted types, sniffing them from magic bytes, `ImageRejected`;
- `normalise`: verify an upload from its header (`inspect`), then decode, orient, strip and re-encode it, or
  keep a conforming JPEG as it is less its metadata (`normalise`, with `lossless.strip_metadata`);
- `lossless`: removing a JPEG's metadata segments without touching its pixels (`strip_metadata`);
- `decode_cost`: the memory a decode will take, from the header (`decode_cost`);
- `edits`: the clinician's non-destructive edits and their validation (`validate_edits`);
- `render`: burning edits into a copy for download and commit (`render`);
- `documents`: a photo as PDF or TIFF for inboxes that take only those (`convert_for_document`);
- `fitted`: a photo as a TIFF or PDF under a byte limit, for Medtech's Inbox Scan (`fit_tiff`, `fit_pdf`).

Import a name from the module that defines it; this package re-exports nothing.
"""

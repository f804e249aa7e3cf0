"""Private files and folders: everything consultcam keeps on disk is 0600 in 0700 folders, whatever the umask.

The database holds patients' names and NHIs, objects their photos, the outbox their records, and the secrets
sign every credential, so no other account on the machine may read or list them (README, "Settings":
DATA_DIR). The modes are set explicitly rather than by changing the process umask: the umask is process-wide
state, and a program that embeds `create_app` must not have its own files changed by it, while the modes here
hold whatever umask the program runs under.

Rules:
- A file is created 0600 (O_CREAT|O_EXCL|O_NOFOLLOW through `tempfile.mkstemp`, then fchmod, since the
  umask can only take bits away from the creation mode) and renamed into place, so a reader never sees it
  half-written nor, even for an instant, readable by others.
- A folder consultcam creates is 0700, and so is every missing parent it creates on the way.
- An existing folder keeps the mode its owner gave it (an export folder may be shared on purpose), except
  DATA_DIR itself and consultcam's own files, which `tighten` narrows at start: installs made before these
  rules left them readable by others.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

#: Owner read and write only.
PRIVATE_FILE = 0o600
#: Owner only: list, enter, create.
PRIVATE_DIR = 0o700


def private_dir(path: str | Path) -> Path:
    """Make folder `path` and any missing parents 0700 (whatever the umask), and return it.

    An existing folder is left as it is. Raises NotADirectoryError when `path` or a parent is something
    else, and OSError (EACCES, EROFS…) when a folder cannot be made.
    """
    path = Path(path)
    missing: list[Path] = []
    here = path
    while not here.is_dir():
        if here.exists() or here.is_symlink():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(here))
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR)
        except FileExistsError:  # made by another process or thread in between: theirs is as good
            if not folder.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(folder)) from None
            continue
        _chmod_folder(folder, PRIVATE_DIR)  # mkdir's mode passed through the umask
    return path


def write_private(
    path: str | Path, data: bytes | Iterable[bytes], *, durable: bool = True, replace: bool = True
) -> bool:
    """Write `data` (bytes, or chunks of bytes) to `path` as a 0600 file, atomically, making its folder
    with `private_dir` when missing.

    The bytes go to a temporary file in the same folder (`.<name>.<random>.tmp`, created 0600 with O_EXCL
    and O_NOFOLLOW), which is then renamed over `path`: a reader sees the whole old file or the whole new
    one. `durable`: fsync the file before the rename and the folder after it, so the write survives a power
    cut (POSIX rename(2) is atomic, not durable). `replace=False`: never replace an existing `path`; the
    temporary file is hard-linked into place instead (link(2) fails with EEXIST), so when two processes
    race to make the same file exactly one wins and both then read the winner's bytes.

    Returns True when this call put the file in place, False when `replace=False` found one already there.
    Raises OSError (ENOSPC, EACCES…); no temporary file is left behind.
    """
    path = Path(path)
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), PRIVATE_FILE)  # exact, even under an odd umask such as 0o200
            for chunk in [data] if isinstance(data, bytes | bytearray | memoryview) else data:
                handle.write(chunk)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        elif not _link_unless_exists(tmp, path):
            return False
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_folder(path.parent)
    return True


def _link_unless_exists(tmp: str, path: Path) -> bool:
    """Put `tmp` at `path` unless something is there; True when it was put. The temporary name is gone
    afterwards either way."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        os.unlink(tmp)
        return False
    except OSError as exc:
        # Filesystems without hard links (some network and FUSE mounts): check, then rename. A second
        # process may slip in between; the last file then wins, as before these rules.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        if path.exists():
            os.unlink(tmp)
            return False
        os.replace(tmp, path)
        return True
    os.unlink(tmp)
    return True


def create_private(path: str | Path) -> bool:
    """Create `path` as an empty 0600 file if there is none (O_EXCL, O_NOFOLLOW), making its folder with
    `private_dir`; returns True when this call made it. An existing file is left as it is (see `tighten`).

    For files another library then fills in place, such as a SQLite database: SQLite makes its -wal, -shm
    and -journal files with the database file's own mode (os_unix.c, findCreateFileMode and robust_open),
    so a 0600 database keeps them 0600 whatever the umask.
    """
    path = Path(path)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return True


def tighten(path: str | Path, mode: int = PRIVATE_FILE) -> None:
    """Take away every permission `path` grants beyond `mode` (0600 for a file, 0700 for a folder) when it
    exists and belongs to this process's user, and log a warning saying so; no-op otherwise.

    For what consultcam owns but an older install may have left readable by others (the database, DATA_DIR).
    A symlink is not followed, and the filesystem root is never touched. Failures are logged, not raised: a
    folder someone else manages still works, it is only less private.
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    current = stat.S_IMODE(info.st_mode)
    if (
        stat.S_ISLNK(info.st_mode)
        or info.st_uid != os.geteuid()
        or path.resolve() == Path(path.resolve().anchor)
        or current & ~mode == 0
    ):
        return
    try:
        if stat.S_ISDIR(info.st_mode):
            _chmod_folder(path, current & mode)
        else:
            os.chmod(path, current & mode)  # lstat above: not a symlink
    except OSError as exc:
        log.warning("%s is mode %04o and could not be made private (%s)", path, current, exc.strerror)
        return
    log.warning("%s was mode %04o, readable by other accounts; it is now %04o", path, current, current & mode)


def fsync_folder(folder: str | Path) -> None:
    """Make a rename in `folder` durable; some filesystems cannot fsync a folder, and the data is synced."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _chmod_folder(folder: Path, mode: int) -> None:
    # Through a descriptor opened without following symlinks: the folder just made (or checked) cannot be
    # swapped for a link to somewhere else in between.
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)

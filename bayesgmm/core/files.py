"""Where bayesgmm writes: checksummed directories that only ever replace their own files.

Saved models (:mod:`bayesgmm.estimator.io`) and reports (:mod:`bayesgmm.analysis.report`)
are directories of files that bayesgmm wrote, each listed with its size and SHA-256.
The rules, in one place:

* a directory is replaced only when everything in it is listed as bayesgmm's (and, for
  a report, unchanged since): nothing a user owns is ever deleted or overwritten;
* a new directory is written beside the old one, verified, and then swapped in
  (:func:`swap_in`), so an interrupted write leaves the old one whole;
* manifest paths are confined to the directory (no absolute paths, no ``..``, no
  symlinks) and checked before anything is read;
* in an output directory (a report, ``bayesgmm classify``'s files), a file is replaced
  only when the record (:data:`RECORD_FILE`) lists it with its current checksum
  (:func:`claim_output`); each command records its own files and keeps the others'
  entries (:func:`record_output`), so two commands may share a directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from bayesgmm.exceptions import ReportPathError, SavedModelError, SavePathError

__all__ = [
    "CLASSIFIER_FORMAT",
    "IDATA_DIR",
    "META_FILE",
    "MODELS_DIR",
    "RECORD_FILE",
    "check_save_path",
    "checked_manifest",
    "claim_output",
    "damaged",
    "manifest",
    "parent_is_file",
    "record_output",
    "sha256",
    "swap_in",
    "unlisted",
]

#: A saved model's metadata (settings, EM solution, manifest) and its posterior store.
META_FILE = "bayesgmm.json"
IDATA_DIR = "idata.zarr"
#: A saved classifier (:mod:`bayesgmm.workflows.classifier_io`): its format's name and
#: the folder of its saved models.
CLASSIFIER_FORMAT = "bayesgmm-saved-classifier"
MODELS_DIR = "models"


def sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(root: Path, sub: str = IDATA_DIR) -> dict[str, dict[str, Any]]:
    """``{relative path: {size, sha256}}`` of every file below ``root / sub``."""
    return {
        p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": sha256(p)}
        for p in sorted((root / sub).rglob("*"))
        if p.is_file()
    }


def damaged(path: Path, what: str) -> SavedModelError:
    return SavedModelError(
        f"saved model {path} is damaged: {what}. Re-save it from the fitted estimator (or re-fit)."
    )


def checked_manifest(path: Path, listing: Any, sub: str = IDATA_DIR) -> dict[str, dict[str, Any]]:
    """The manifest, with every entry checked for form and confined to ``sub`` of the
    model folder (``IDATA_DIR``; ``MODELS_DIR`` for a saved classifier; SavedModelError
    otherwise: nothing outside is read or described)."""
    if not isinstance(listing, dict) or not listing:
        raise damaged(path, f"the manifest in {META_FILE} is not a non-empty table of files")
    root = path.resolve()
    for rel, entry in listing.items():
        parts = PurePosixPath(rel).parts if isinstance(rel, str) else ()
        if (
            not parts
            or PurePosixPath(rel).is_absolute()
            or ".." in parts
            or "\\" in rel
            or parts[0] != sub
        ):
            raise damaged(path, f"the manifest names a path outside {sub}/: {rel!r}")
        if not (path / rel).resolve().is_relative_to(root):
            raise damaged(path, f"the manifest entry {rel!r} leads outside the model folder")
        if not (
            isinstance(entry, dict)
            and set(entry) == {"size", "sha256"}
            and isinstance(entry["size"], int)
            and isinstance(entry["sha256"], str)
            and len(entry["sha256"]) == 64
        ):
            raise damaged(path, f"the manifest entry for {rel!r} is not {{size, sha256}}")
    return listing


def check_files(path: Path, listing: dict[str, dict[str, Any]]) -> None:
    """Every listed file is there, whole and unaltered, and ``IDATA_DIR`` holds no other."""
    listing = checked_manifest(path, listing)
    for rel, entry in listing.items():
        f = path / rel
        if f.is_symlink() or not f.is_file():
            raise damaged(path, f"file {rel} is missing")
        if f.stat().st_size != entry["size"]:
            raise damaged(path, f"file {rel} has a different size than recorded (truncated?)")
        if sha256(f) != entry["sha256"]:
            raise damaged(path, f"file {rel} does not match its checksum (altered)")
    extra = [e for e in unlisted(path, set(listing)) if e.startswith(IDATA_DIR)]
    if extra:
        raise damaged(path, f"{IDATA_DIR}/ holds files its manifest does not list: {extra[:5]}")


def unlisted(root: Path, listed: set[str], own: tuple[str, ...] = (META_FILE,)) -> list[str]:
    """Entries under ``root`` that are neither ``own`` files nor ``listed`` (directories
    count as listed when they hold listed files only; symlinks never do)."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out.append(rel)
        elif p.is_dir():
            if not any(f.startswith(rel + "/") for f in listed):
                out.append(rel + "/")
        elif rel not in own and rel not in listed:
            out.append(rel)
    return out


def parent_is_file(path: Path) -> Path | None:
    """The first parent of ``path`` that exists and is not a directory, if any."""
    return next((p for p in path.parents if p.exists() and not p.is_dir()), None)


def check_save_path(path: Path, overwrite: bool) -> None:
    """Raise :class:`SavePathError` unless a saved model may be written to ``path``.

    Nothing is written. ``path`` may not exist yet (its parents must be directories or
    not exist) or be an empty directory; with ``overwrite`` it may hold an earlier saved
    model and nothing else.
    """
    path = Path(path)
    parent = parent_is_file(path)
    if parent is not None:
        raise SavePathError(
            f"cannot save to {path}: {parent} is a file, not a directory. Choose a path "
            "whose parent folders are directories (or do not exist yet)."
        )
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return  # an empty directory: nothing in it to lose
    if not overwrite:
        raise SavePathError(f"{path} already exists; pass overwrite=True to replace it.")
    if path.is_symlink() or not path.is_dir():
        raise SavePathError(
            f"{path} exists and is not a saved bayesgmm model (it is a file); refusing to "
            "replace it."
        )
    import json

    try:
        meta = json.loads((path / META_FILE).read_text())
        sub = MODELS_DIR if meta.get("format") == CLASSIFIER_FORMAT else IDATA_DIR
        listed = set(checked_manifest(path, meta["manifest"], sub))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, SavedModelError):
        raise SavePathError(
            f"{path} exists and is not a readable saved bayesgmm model (no valid {META_FILE}); "
            "refusing to replace it. Remove it yourself if it is yours to remove, or choose "
            "another path."
        ) from None
    foreign = unlisted(path, listed)
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        shown = ", ".join(foreign[:5]) + more
        raise SavePathError(
            f"refusing to replace {path}: it holds files that bayesgmm did not write there "
            f"({shown}). Overwriting only ever replaces a saved model's own files; move yours "
            "elsewhere or save to another path."
        )


def _new_directory_mode(inside: Path) -> int:
    """The mode a new directory gets here (the umask's), read from one made in ``inside``
    (a fresh directory of bayesgmm's own) rather than by setting the process's umask,
    which other threads share."""
    probe = inside / ".bayesgmm-mode-probe"
    probe.mkdir()
    try:
        return probe.stat().st_mode & 0o777
    finally:
        probe.rmdir()


def swap_in(tmp: Path, path: Path, recheck) -> None:
    """Move the verified directory ``tmp`` to ``path``, replacing what is there.

    ``recheck()`` is called just before (it raises if ``path`` may no longer be
    replaced). The old directory is renamed aside first and put back if the move fails,
    then removed: it held only bayesgmm's own files (checked by ``recheck``).
    """
    old: Path | None = None
    try:
        if path.exists():
            recheck()
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            old.rmdir()
            path.rename(old)
        tmp.chmod(_new_directory_mode(tmp))  # tempfile's is owner-only
        tmp.rename(path)
    except BaseException:
        if old is not None and old.exists() and not path.exists():
            old.rename(path)  # put the earlier one back
        raise
    if old is not None:
        shutil.rmtree(old)


# --------------------------------------------------------------------------- #
# Output directories (reports, classify): only bayesgmm's own files are replaced
# --------------------------------------------------------------------------- #

#: Written last into an output directory: the files bayesgmm wrote, with their SHA-256.
RECORD_FILE = ".bayesgmm-report.json"


def claim_output(out: Path, names, saved: str, create: bool = True) -> dict[str, str]:
    """Make sure every file of ``names`` (and the saved model in the folder ``saved``) may
    be written in ``out``; return the earlier output's record (file name -> SHA-256).

    bayesgmm only ever replaces files that its earlier output wrote and that are
    unchanged since (the record, ``.bayesgmm-report.json``, holds their checksums); any
    other file of the same name is the user's and is left alone. ``bayesgmm classify``
    writes its files under the same rule.
    """
    if out.exists() and not out.is_dir():
        raise ReportPathError(
            f"cannot write a report to {out}: it is a file, not a directory. Choose a "
            "directory (it is created if needed)."
        )
    parent = parent_is_file(out)
    if parent is not None:
        raise ReportPathError(f"cannot write a report to {out}: {parent} is a file.")
    earlier = _read_record(out)
    foreign = [
        name
        for name in names
        if (out / name).exists()
        and (not (out / name).is_file() or earlier.get(name) != sha256(out / name))
    ]
    if foreign:
        raise ReportPathError(
            f"refusing to write the report to {out}: it already holds {foreign}, which no "
            "earlier bayesgmm report wrote there (or which were changed since). Reports only "
            "replace their own files; choose another output directory or move those files."
        )
    check_save_path(out / saved, overwrite=True)  # the saved model's own rule
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return {k: v for k, v in earlier.items() if (out / k).is_file()}


def record_output(out: Path, names) -> None:
    """Record the checksums of the files ``names`` that bayesgmm wrote in ``out``, keeping
    the record's entries of other files (another command's output in the same directory)
    that are still there, unchanged."""
    kept = {
        name: digest
        for name, digest in _read_record(out).items()
        if name not in names and (out / name).is_file() and sha256(out / name) == digest
    }
    files = {**kept, **{name: sha256(out / name) for name in names if (out / name).is_file()}}
    (out / RECORD_FILE).write_text(json.dumps({"files": files}, indent=1) + "\n")


def _read_record(out: Path) -> dict[str, str]:
    """The record's file names and checksums ({} without a readable record)."""
    record = out / RECORD_FILE
    if not record.is_file():
        return {}
    try:
        loaded = json.loads(record.read_text())
        return {str(k): str(v) for k, v in loaded.get("files", {}).items()}
    except (ValueError, AttributeError, UnicodeDecodeError):
        return {}

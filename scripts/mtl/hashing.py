"""Content hashes of files and folders, as provenance records (mtl.provenance) name them.

Hashes name their algorithm: "blake3:<hex>" (BLAKE3, 256 bits) in new records, "sha256:<hex>" in
records written before BLAKE3 was adopted; both verify (`algorithm_of`). BLAKE3 is a
cryptographic hash too, and about 20x faster than sha256 on CPUs without SHA extensions, where
hashing every written model was half of a merge's CPU time. A folder's hash is the hash, by the
same algorithm, of its manifest written the way `b3sum` and `sha256sum` print it, one line per
file sorted by path ("<hex>  <relative posix path>\\n"), so a folder can be checked by hand
with standard tools:
    cd FOLDER && find . -type f ! -name .snakemake_timestamp | sed 's|^\\./||' | LC_ALL=C sort \\
        | xargs b3sum | b3sum          # sha256sum for a "sha256:" record
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import blake3

CHUNK_BYTES = 1 << 20
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"
# File hashing is I/O bound and both hashes release the GIL, so threads speed up many-file folders.
HASH_THREADS = min(8, os.cpu_count() or 1)


class Hasher(Protocol):
    def update(self, data: Any, /) -> object: ...

    def hexdigest(self) -> str: ...


# The algorithms a record may name; HASH writes new records. Both give 256-bit (64 hex) digests.
HASHERS: dict[str, Any] = {"blake3": blake3.blake3, "sha256": hashlib.sha256}
HASH = "blake3"
DIGEST = re.compile(r"([a-z0-9]+):[0-9a-f]{64}")


class ProvenanceError(Exception):
    """A provenance contract was broken or a record cannot be read."""


def new_hasher(algorithm: str = HASH) -> Hasher:
    """A fresh hash object of `algorithm` (a key of HASHERS); `finish` turns it into a digest."""
    return HASHERS[algorithm]()


def finish(hasher: Hasher, algorithm: str = HASH) -> str:
    """The "<algorithm>:<hex>" digest of `hasher`."""
    return f"{algorithm}:{hasher.hexdigest()}"


def algorithm_of(digest: str) -> str:
    """The algorithm a digest names ("blake3:<hex>" -> "blake3"); unknown or malformed ones are
    refused, naming the digest."""
    match = DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None or match.group(1) not in HASHERS:
        raise ProvenanceError(
            f"{digest!r} is not a digest ({' or '.join(f'{a}:<64 hex>' for a in HASHERS)})"
        )
    return match.group(1)


def hash_file(path: str | os.PathLike, algorithm: str = HASH) -> str:
    """Hash of a file's bytes, streamed in 1 MiB chunks, as "<algorithm>:<hex>"."""
    digest = new_hasher(algorithm)
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            digest.update(view[:n])
    return finish(digest, algorithm)


def manifest(
    path: str | os.PathLike, algorithm: str = HASH, known: Mapping[str, str] | None = None
) -> dict[str, str]:
    """{relative posix path: file hash} for every file under the folder `path`; files whose hash
    is in `known` (hashed while written) are not read.

    Snakemake's `.snakemake_timestamp` marker at the top of a folder is not part of its content.
    """
    root = Path(path)
    known = known or {}
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    files = []
    for dirpath, _, filenames in os.walk(root):
        files.extend((Path(dirpath) / name).relative_to(root).as_posix() for name in filenames)
    # Snakemake drops this mtime marker into directory() outputs after the job: not content.
    files = [rel for rel in files if rel != SNAKEMAKE_TIMESTAMP]
    todo = [rel for rel in files if rel not in known]
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        fresh = dict(
            zip(todo, pool.map(lambda rel: hash_file(root / rel, algorithm), todo), strict=True)
        )
    return {rel: known[rel] if rel in known else fresh[rel] for rel in sorted(files)}


def manifest_hash(entries: Mapping[str, str], algorithm: str = HASH) -> str:
    """The folder hash of a manifest: `algorithm` over its `b3sum`/`sha256sum`-style lines.

    Every entry must be of `algorithm` too: a line holds the bare hex, which would not say how
    it was made.
    """
    digest = new_hasher(algorithm)
    for rel in sorted(entries):
        if algorithm_of(entries[rel]) != algorithm:
            raise ProvenanceError(
                f"manifest entry {rel}: {entries[rel]!r} is not a {algorithm} hash"
            )
        digest.update(f"{entries[rel].removeprefix(algorithm + ':')}  {rel}\n".encode())
    return finish(digest, algorithm)


def hash_path(path: str | os.PathLike, algorithm: str = HASH) -> str:
    """Content hash of a file, or of a folder via its manifest."""
    path = Path(path)
    if path.is_dir():
        return manifest_hash(manifest(path, algorithm), algorithm)
    return hash_file(path, algorithm)


class HashingWriter(io.RawIOBase):
    """Binary file-like wrapper that hashes bytes as they pass, so big writers need no re-read.

    Use it inside `atomic_file(path, "wb")`, then hand `writer.hash` to `Step.set_hash(path, ...)`.
    Closing it leaves the wrapped handle open: `atomic_file` still has to fsync and rename it.
    """

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._digest = new_hasher()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = self._raw.write(view)
        # Hash only what the wrapped handle accepted; a caller re-sends the rest.
        written = len(view) if written is None else written
        self._digest.update(view[:written])
        self.size += written
        return written

    def flush(self) -> None:
        if not self._raw.closed:
            self._raw.flush()

    @property
    def hash(self) -> str:
        return finish(self._digest)

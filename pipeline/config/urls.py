"""Store URLs as the config takes them: which name this machine's files, and which name
another machine's (refused: fsspec would read them as a relative path here).

Here, below the stores (:mod:`pipeline.store.location`), so that the config's validation can
refuse such a URL with its file, line and key.
"""

from __future__ import annotations

__all__ = [
    "FILE_URL_FIX",
    "LOCAL_SCHEMES",
    "file_url_host",
    "file_url_problem",
    "file_url_without_slashes",
]

#: The URL schemes of fsspec's local file system (``LocalFileSystem.protocol``).
LOCAL_SCHEMES = ("file://", "local://")

#: How a file URL must be written, said with every refusal of one that names a host.
FILE_URL_FIX = (
    "a file URL must name no host or localhost: file:///path, file://localhost/path, or "
    "the plain path"
)


def file_url_host(url: str) -> str | None:
    """The host a ``file://`` or ``local://`` URL names, alone or anywhere in a chain
    (``zip::file://HOST/a.zip``), when it is neither empty nor ``localhost``; None when it
    names none. fsspec reads ``file://HOST/path`` as the relative path ``HOST/path`` under the
    working folder: another machine's file would silently be this one's other file, so such a
    URL is refused (:data:`FILE_URL_FIX`), by the config and by :meth:`Location.of`."""
    for bit in url.split("::"):
        for scheme in LOCAL_SCHEMES:
            if bit.startswith(scheme):
                host = bit[len(scheme) :].partition("/")[0]
                if host and host.lower() != "localhost":
                    return host
    return None


def file_url_without_slashes(url: str) -> str | None:
    """The part of ``url`` (alone or in a chain) that is a file URL without its ``//``
    (``file:/path``, RFC 8089's short form, or ``local:/path``), which fsspec does not take for
    a URL at all: the path ``./file:/path`` under the working folder; None where there is
    none."""
    for bit in url.split("::"):
        for scheme in LOCAL_SCHEMES:
            bare = scheme.rstrip("/")  # 'file:'
            if bit.startswith(bare) and not bit.startswith(scheme):
                return bit
    return None


def file_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be read, in words that follow the URL (a file URL naming another
    host: :func:`file_url_host`; one without its ``//``: :func:`file_url_without_slashes`),
    or None when it can be."""
    short = file_url_without_slashes(url)
    if short is not None:
        return (
            f"{short!r} is a file URL without '//', which would be read as a folder named "
            f"{short.split('/', 1)[0]!r} here: {FILE_URL_FIX}"
        )
    host = file_url_host(url)
    if host is None:
        return None
    return (
        f"a file URL naming the host {host!r} would be read as the folder {host}/ here: "
        f"{FILE_URL_FIX} (another machine's files: its file system's URL, such as sftp://, "
        "or where it is mounted here)"
    )

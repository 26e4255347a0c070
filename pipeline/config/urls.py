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
    "http_query",
    "url_query_problem",
    "without_query",
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


def http_query(url: str) -> tuple[str, str] | None:
    """(protocol, query) of the first part of ``url`` (alone or in a chain) that is an HTTP(S)
    URL with a query (``https://host/a.zarr?sig=...``, as signed URLs and Azure SAS tokens
    look); None where there is none. Only HTTP reads '?' as a query's start: elsewhere
    (``s3://bucket/a?b.zarr``) it is a character of a name."""
    for bit in url.split("::"):
        protocol, sep, rest = bit.partition("://")
        if sep and protocol.lower() in ("http", "https") and "?" in rest:
            return protocol, rest.partition("?")[2].partition("#")[0]
    return None


def without_query(url: str) -> str:
    """``url`` with the query of each of its HTTP(S) parts shown as ``?...``: what may be said
    of such a URL (a query is often a credential, which is never printed or written)."""
    bits = []
    for bit in url.split("::"):
        protocol, sep, rest = bit.partition("://")
        if sep and protocol.lower() in ("http", "https") and "?" in rest:
            bit = f"{protocol}://{rest.partition('?')[0]}?..."
        bits.append(bit)
    return "::".join(bits)


def url_query_problem(url: str, output: bool = False) -> str | None:
    """Why ``url``, a store's URL with a query in an HTTP(S) part (:func:`http_query`), cannot
    be used, in words that name the fix and never the query's values; None for any other URL.

    An input's keys go into the URL's path, so a query there would end up before them
    (``in.zarr?sig=X/zarr.json``: fsspec and zarr-python ask for that), and a URL is said in
    summaries, run records and errors, while a query often holds a credential. fsspec's HTTP
    file system sends its ``params`` option (any extra keyword of aiohttp's requests) with
    every request it makes, keys in the path, and ``storage_options`` are masked wherever
    they are written: that is the fix. The pipeline writes no output over HTTP at all."""
    found = http_query(url)
    if found is None:
        return None
    protocol, query = found
    names = [p.partition("=")[0] for p in query.split("&") if "=" in p and p.partition("=")[0]]
    shown = without_query(url)
    if output:
        return (
            f"{shown} is an HTTP URL with a query: the pipeline writes no output over HTTP "
            "(and a query, often a credential, would be written out with the URL): choose a "
            "local folder or an object store for output.store"
        )
    params = "{" + ", ".join(f"{n}: ..." for n in names or ["NAME"]) + "}"
    where = f"{{params: {params}}}"
    if "::" in url:
        where = f"{{{protocol}: {where}}}"
    return (
        f"{shown} holds '?', which starts a URL's query, so it cannot be read as an HTTP "
        "store (its keys would follow the query, and a query, often a credential, would be "
        "carried into summaries and errors): give the URL without its query and the query's "
        f"parameters as storage_options: {where}, which fsspec's HTTP file system sends with "
        "every request (where '?' is part of the store's name: copy the store to a local "
        "folder, or rename it)"
    )

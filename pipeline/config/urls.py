"""Store URLs as the config takes them: which name this machine's files, and which name
another machine's (refused: fsspec would read them as a relative path here).

Here, below the stores (:mod:`pipeline.store.location`), so that the config's validation can
refuse such a URL with its file, line and key.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from pipeline.errors import said_option

__all__ = [
    "ENDPOINT_TWICE",
    "FILE_URL_FIX",
    "KINDS_SAID",
    "LOCAL_SCHEMES",
    "PROXIES_TAKER",
    "QUERY_REFUSING_SCHEMES",
    "OptionProblem",
    "alias_said",
    "alias_twice",
    "async_option",
    "async_said",
    "botocore_config_choices",
    "botocore_config_kinds",
    "caching_layer",
    "caching_layer_problem",
    "chain_options_hint",
    "choice_option",
    "choice_said",
    "endpoint_twice",
    "endpoint_userinfo_said",
    "endpoint_with_userinfo",
    "file_url_host",
    "file_url_problem",
    "file_url_without_slashes",
    "home_problem",
    "http_fragment",
    "http_query",
    "ipv6_chain_problem",
    "key_after_slash",
    "kind_option",
    "kind_option_said",
    "mapping_option",
    "mapping_said",
    "misplaced_options_problem",
    "signature_versions",
    "storage_option_problem",
    "text_bool_option",
    "text_bool_said",
    "text_option",
    "text_said",
    "unknown_home",
    "unknown_request_parameter",
    "unknown_request_said",
    "url_fragment",
    "url_query",
    "url_query_problem",
    "url_userinfo",
    "url_userinfo_problem",
    "url_without_host",
    "url_without_slashes",
    "without_query",
    "without_userinfo",
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
                # file://~/x: a home folder, which fsspec expands as the plain path's
                if host and host.lower() != "localhost" and not host.startswith("~"):
                    return host
    return None


def unknown_home(path: str) -> str | None:
    """The ``~user`` (or ``~``) that the local path or ``file://`` URL ``path`` (alone, or at
    the end of a chain: ``zip::~me/a.zip``) begins with where no home folder is known for it
    here (no such user); None where there is none, or the path names a home folder that is
    known. ``os.path.expanduser``, which the stores and fsspec read such a path with, leaves
    it as it is: ``~nouser/out.zarr`` had been a relative path, and a run had made a folder
    named ``~nouser`` in the folder it ran in."""
    local = path.split("::")[-1]
    for scheme in LOCAL_SCHEMES:
        if local.startswith(scheme):
            local = local[len(scheme) :]
    if "://" in local or not local.startswith("~"):
        return None
    first = local.split("/", 1)[0]
    return first if os.path.expanduser(first) == first else None


def home_problem(path: str) -> str | None:
    """Why the local path ``path`` cannot be read (:func:`unknown_home`: it names the home
    folder of a user there is none of), in words that follow the path; None where it can
    be. Refused always, a folder named so there or not: ``./~nouser/x`` names that one."""
    first = unknown_home(path)
    if first is None:
        return None
    whose = f"of a user named {first[1:]!r}" if first != "~" else "of the user running it"
    rest = path.split("::")[-1].partition(first)[2]
    return (
        f"{path!r} begins with {first!r}, the home folder {whose}, and this machine has no "
        f"such user (it would be read as a folder named {first!r} in the folder the command "
        f"runs in): write the home folder's path in full, or './{first}{rest}' for a folder "
        "of that name"
    )


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


def url_without_slashes(url: str) -> tuple[str, str] | None:
    """The part of ``url`` (alone or in a chain) that names a protocol fsspec knows (``s3``,
    ``gs``, ``memory``, ...) but misses the ``//`` after it (``s3:/bucket/out.zarr``,
    ``s3:bucket/out.zarr``, or its ``:``: ``s3//bucket/out.zarr``), with the URL it most
    likely meant (``s3://bucket/out.zarr``); None where there is none. fsspec takes a protocol
    only before ``://`` (or ``::``), so it reads such a part as a relative local path: a typo
    in an output's URL had written the output into a folder ``s3:/`` here, and an input's was
    "does not exist". A part that starts with ``./`` or ``/`` is a path, and ``data:`` a
    data URL, which fsspec takes so; file URLs are :func:`file_url_without_slashes`'s."""
    from fsspec.registry import known_implementations, registry

    protocols = {*known_implementations, *registry} - {"data", "file", "local"}
    for bit in url.split("::"):
        head, colon, rest = bit.partition(":")
        if colon and not rest.startswith("//") and head.lower() in protocols:
            return bit, f"{head.lower()}://{rest.lstrip('/')}"
        head, slashes, rest = bit.partition("//")
        if slashes and "/" not in head and head.lower() in protocols:
            return bit, f"{head.lower()}://{rest.lstrip('/')}"
    return None


def url_in_capitals(url: str) -> tuple[str, str] | None:
    """The part of ``url`` (alone or in a chain) whose protocol fsspec knows only in small
    letters (``S3://bucket/in.zarr``, ``GS://``, ``Memory://``), with the URL meant; None
    where there is none. fsspec looks protocols up as written: such a URL failed only when
    opened, with fsspec's "Protocol not known: S3", which named no fix."""
    from fsspec.registry import known_implementations, registry

    protocols = {*known_implementations, *registry}
    for bit in url.split("::"):
        head, sep, rest = bit.partition("://")
        if sep and head not in protocols and head.lower() in protocols:
            return bit, f"{head.lower()}://{rest}"
    return None


#: A shell's reference to an environment variable: ``$HOME``, ``${HOME}``.
_VARIABLE = re.compile(r"\$(\{)?([A-Za-z_][A-Za-z0-9_]*)(?(1)\})")


def environment_variable(path: str) -> str | None:
    """The first reference to a set environment variable (``$HOME``, ``${SCRATCH}``) in the
    local path or ``file://`` URL ``path``, as written; None where there is none (a URL of
    another protocol, a ``$`` naming no variable set here). Such a path had been taken as it
    is, relative: the input "did not exist" under a folder named ``$HOME``, and an output
    was written into one. A reference whose folder or file exists as written (a folder named
    ``run$USER``) is none: that is the path meant, and no other way of writing it would do."""
    protocol = path.partition("://")[0] if "://" in path else ""
    if protocol not in ("", "file", "local"):
        return None
    local = path.partition("://")[2] if protocol else path
    host, slash, rest = local.partition("/")
    if protocol and host.lower() == "localhost":  # file://localhost/tmp/x: /tmp/x
        local = slash + rest
    for m in _VARIABLE.finditer(local):
        if m.group(2) not in os.environ:
            continue
        end = local.find("/", m.end())
        if not os.path.lexists(os.path.expanduser(local if end < 0 else local[:end])):
            return m.group(0)
    return None


def unknown_protocol(url: str) -> str | None:
    """The protocol of ``url`` (alone or in a chain) that fsspec knows in no case
    (``foo://bucket/out.zarr``, ``azure://``); None where there is none. Such a URL failed only
    when opened, with "cannot open ... (ValueError: Protocol not known: foo); check the
    store's URL and its storage_options", naming neither the key nor what to write."""
    from fsspec.registry import known_implementations, registry

    protocols = {p.lower() for p in (*known_implementations, *registry)}
    for bit in url.split("::"):
        head, sep, _ = bit.partition("://")
        if sep and _SCHEME.fullmatch(head) and head.lower() not in protocols:
            return head
    return None


#: What a URL's protocol may be written as (RFC 3986's scheme).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


#: Schemes of s3fs, whose listings drop the ``/`` that begins a key (``s3://bucket//x``:
#: :func:`key_after_slash`).
_KEY_SLASH_DROPPING = frozenset(("s3", "s3a"))


def key_after_slash(url: str) -> tuple[str, str] | None:
    """The part of ``url`` (alone or in a chain) whose bucket is followed by an empty name
    (``s3://bucket//out.zarr``: a key that begins with ``/``), with the URL it most likely
    meant (``s3://bucket/out.zarr``); None where there is none. s3fs reads and writes such
    objects under keys that begin with ``/``, as zarr-python does, but lists the folder
    without it (its ``_lsdir`` strips the key's leading ``/``), another folder: an output
    written there had every block written and none found by the check that they all were
    ("no record of being written", and ``run --resume`` again the same), and an input was
    looked for in the other folder."""
    for bit in url.split("::"):
        protocol, sep, rest = bit.partition("://")
        if not sep or protocol not in _KEY_SLASH_DROPPING:
            continue
        bucket, slash, key = rest.lstrip("/").partition("/")
        if slash and key.startswith("/") and key.strip("/"):  # not the bucket itself
            return bit, f"{protocol}://{bucket}/{key.lstrip('/')}"
    return None


#: Schemes whose URL names a bucket (or container, host) before its path, and what it is
#: called: ``s3://`` alone names none, and ``s3:///x.zarr`` an empty one.
_NAMED_HOSTS = {
    **dict.fromkeys(("s3", "s3a", "gs", "gcs", "oss"), "BUCKET"),
    **dict.fromkeys(("az", "abfs", "abfss", "adl"), "CONTAINER"),
    **dict.fromkeys(("http", "https", "sftp", "ssh", "ftp", "smb", "webhdfs"), "HOST"),
}


def url_without_host(url: str) -> tuple[str, str, str] | None:
    """The part of ``url`` (alone or in a chain) of a protocol that names a bucket, container
    or host before its path (``s3``, ``gs``, ``az``, ``http``, ``sftp``, ...) but names none:
    nothing between its ``://`` and the ``/``, ``?`` or ``#`` that follows (``s3://``,
    ``s3:///in.zarr``, ``gs://``, ``https:///x.zarr``, ``http://:8080/x``); with what it
    misses (``'BUCKET'``, ``'CONTAINER'``, ``'HOST'``) and the URL to write in its place,
    that word in the bucket's place (``s3://BUCKET/in.zarr``); None where there is none.
    Such a URL failed only when opened, with another cause: ``s3://`` as "s3://zarr.json
    holds metadata zarr-python cannot read (NoCredentialsError ...)", ``https://`` as a store
    that does not exist. ``memory://``, ``file://`` and ``hdfs://`` (its default name node)
    name no host, rightly."""
    for bit in url.split("::"):
        protocol, sep, rest = bit.partition("://")
        word = _NAMED_HOSTS.get(protocol.lower()) if sep else None
        if word is None:
            continue
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        user, at, host = authority.rpartition("@")
        port = ""
        if not host.startswith("["):  # an IPv6 address's colons are no port's
            host, colon, number = host.partition(":")
            port = colon + number
        if host:
            continue
        path = re.split(r"[?#]", rest[len(authority) :], maxsplit=1)[0].lstrip("/")
        scheme = protocol.lower()
        if word == "HOST":  # a server's user and port are its URL's own
            return bit, word, f"{scheme}://{user}{at}{word}{port}/{path or 'path'}"
        # an object store's endpoint and credentials go in storage_options, never its URL
        return bit, word, f"{scheme}://{word}/{path or 'path'}"
    return None


def _with_host_named(url: str) -> str:
    """``url`` as a line suggests it, its part that names no bucket or host
    (:func:`url_without_host`) written as that line says: a URL another check rewrites
    (credentials or a caching layer taken out) had been suggested naming none, and then
    refused."""
    hostless = url_without_host(url)
    return url if hostless is None else url.replace(hostless[0], hostless[2], 1)


def ipv6_chain_problem(url: str) -> str | None:
    """Why ``url``, whose host is an IPv6 address written with ``::`` (``http://[::1]:8080/x``),
    cannot be read: fsspec splits every URL at ``::`` into a chain of file systems, before it
    parses a host, and so reads ``http://[`` then a local path (it had been refused as
    "input.storage_options make no file system for http://[::file:///...]", blaming the
    options); with the address written without ``::`` in its place
    (``http://[0:0:0:0:0:0:0:1]:8080/x``), which fsspec reads; None where there is no such
    address."""
    import ipaddress

    for found in re.finditer(r"\[([0-9A-Fa-f:.]*::[0-9A-Fa-f:.]*)(%[^\]]*)?\]", url):
        try:  # a zone's name (%25eth0) kept as it is
            address = ipaddress.IPv6Address(found[1])
        except ValueError:
            continue
        full = ":".join(f"{int(group, 16):x}" for group in address.exploded.split(":"))
        meant = url[: found.start(1)] + full + url[found.end(1) :]
        return (
            f"{without_query(url)!r} writes its IPv6 address with '::', which fsspec reads as "
            f"a chain of file systems ('::' joins them): write the address in full, "
            f"{without_query(meant)}, or a host name"
        )
    return None


def file_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be read, in words that follow the URL (a file URL naming another
    host: :func:`file_url_host`; one without its ``//``: :func:`file_url_without_slashes`,
    and any other protocol's: :func:`url_without_slashes`; a protocol in capitals:
    :func:`url_in_capitals`; one fsspec knows in no case: :func:`unknown_protocol`; an
    environment variable, which nothing expands: :func:`environment_variable`; an S3 bucket
    followed by ``//``: :func:`key_after_slash`; a bucket or host missing, ``s3://``:
    :func:`url_without_host`; a user's home folder, ``~nouser/x``, of no user here:
    :func:`home_problem`), or None when it can be."""
    ipv6 = ipv6_chain_problem(url)
    if ipv6 is not None:
        return ipv6
    short = file_url_without_slashes(url)
    if short is not None:
        return (
            f"{short!r} is a file URL without '//', which would be read as a folder named "
            f"{short.split('/', 1)[0]!r} here: {FILE_URL_FIX}"
        )
    typo = url_without_slashes(url)
    if typo is not None:
        bit, meant = typo
        return (
            f"{without_query(bit)!r} is no URL (a protocol is followed by '://'), and would be "
            f"read as a local folder named {bit.split('/', 1)[0]!r} here: write "
            f"{without_query(meant)!r}, or './{without_query(bit)}' for a local folder of "
            "that name"
        )
    capitals = url_in_capitals(url)
    if capitals is not None:
        bit, meant = capitals
        return (
            f"{without_query(bit).partition('://')[0]!r} is no protocol fsspec knows (it "
            f"reads protocols in small letters): write {without_query(meant)!r}"
        )
    hostless = url_without_host(url)
    if hostless is not None:
        bit, word, meant = hostless
        scheme, _, rest = bit.partition("://")
        first = rest.lstrip("/").split("/", 1)
        guess = (  # s3:///bucket/x, as s3fs reads it
            f" (or {scheme.lower()}://{rest.lstrip('/')}, if {first[0]!r} is the {word.lower()})"
            if word != "HOST" and rest.startswith("/") and len(first) == 2 and first[1]
            else ""
        )
        return (
            f"{without_query(bit)!r} names no {word.lower()} (nothing between '://' and "
            f"its path): write {meant}, the {word.lower()}'s name in place of {word}{guess}"
        )
    slash = key_after_slash(url)
    if slash is not None:
        bit, meant = slash
        return (
            f"{without_query(bit)!r} has an empty name after its bucket ('//'), which s3fs "
            "writes into its keys but drops from its listings, so a run would not find what "
            f"it wrote: write {without_query(meant)!r}"
        )
    home = home_problem(url)
    if home is not None:
        return home
    variable = environment_variable(url)
    if variable is not None:
        return (
            f"{variable} is an environment variable, which the config does not expand (the "
            f"path would be a folder named {variable!r}): write the path it stands for, "
            f"{os.path.expandvars(url)!r}"
        )
    unknown = unknown_protocol(url)
    if unknown is not None:
        return (
            f"{unknown!r} is no protocol fsspec knows: write a local path, or a URL of a "
            "protocol it knows (such as s3://, gs://, https://, file://)"
        )
    host = file_url_host(url)
    if host is None:
        return None
    return (
        f"a file URL naming the host {host!r} would be read as the folder {host}/ here: "
        f"{FILE_URL_FIX} (another machine's files: its file system's URL, such as sftp://, "
        "or where it is mounted here)"
    )


#: Schemes of file systems that name a store by host (or bucket) and path alone, and take
#: their credentials from options: a '?' or '#' in such a URL is no query or fragment to them
#: (s3fs put ``outq.zarr?X-Amz-Security-Token=...`` into every key's name, and the token into
#: the plan line, the summary and the output's ``zarr.json``; s3fs reads a ``?versionId=``
#: and gcsfs a ``#generation`` of their own; fsspec's URL parsing of sftp, ftp, hdfs and smb
#: drops both).
QUERY_REFUSING_SCHEMES = frozenset(
    (
        "s3",
        "s3a",
        "gs",
        "gcs",
        "az",
        "abfs",
        "abfss",
        "adl",
        "oss",
        "sftp",
        "ssh",
        "ftp",
        "hdfs",
        "webhdfs",
        "smb",
    )
)

_HTTP = ("http", "https")

#: Schemes whose file system reads its URL's path with fsspec's ``infer_storage_options``
#: (urllib's ``urlsplit``), which drops a '?' and all that follows it: to them
#: ``ftp://host/out?.zarr`` is ``/out``, and a '?' is never a character of a name.
_QUERY_DROPPING = frozenset(("sftp", "ssh", "ftp", "hdfs", "webhdfs", "smb"))

#: Schemes whose file system (adlfs) reads its URL's path so too, then puts a query back
#: after a '?' (``abfs://cont/out?x.zarr`` is ``out?x.zarr``): an empty one is not, so a
#: '?' that ends the path (``abfs://cont/out.zarr?``) is dropped.
_EMPTY_QUERY_DROPPING = frozenset(("az", "abfs", "abfss", "adl"))


def _drops_question_mark(protocol: str, query: str) -> bool:
    """Whether the file system of ``protocol`` reads a URL whose path has a '?' followed by
    ``query`` (up to any '#') as the path before the '?': :data:`_QUERY_DROPPING`, and
    :data:`_EMPTY_QUERY_DROPPING` where ``query`` is empty. s3fs, gcsfs and ossfs keep a
    '?' in a key's name (``s3://bkt/out.zarr?`` is written under ``out.zarr?/``)."""
    p = protocol.lower()
    return p in _QUERY_DROPPING or (p in _EMPTY_QUERY_DROPPING and not query)


def _part_query(protocol: str, rest: str) -> str | None:
    """The query of one URL part ``protocol://rest`` as :func:`url_query` finds it: any
    ``?...`` of an HTTP(S) part; of a part of :data:`QUERY_REFUSING_SCHEMES`, a ``?...`` that
    holds parameters (a '=' or '&': ``?X-Amz-Security-Token=...``) or that its file system
    drops (:func:`_drops_question_mark`: ``ftp://host/out?.zarr``, ``abfs://cont/out.zarr?``),
    a lone '?' elsewhere there being a character of a name (``s3://bucket/out a*b?.zarr``,
    which s3fs stores as written); None elsewhere (a local path's or file URL's '?' is a
    character of its name)."""
    p = protocol.lower()
    if "?" not in rest or (p not in _HTTP and p not in QUERY_REFUSING_SCHEMES):
        return None
    query = rest.partition("?")[2].partition("#")[0]
    if p in _HTTP or "=" in query or "&" in query or _drops_question_mark(p, query):
        return query
    return None


def _part_fragment(protocol: str, rest: str) -> str | None:
    """The fragment of one URL part as :func:`url_fragment` finds it: what follows a '#' of
    an HTTP(S) part or of one of :data:`QUERY_REFUSING_SCHEMES`; None elsewhere."""
    p = protocol.lower()
    if "#" in rest and (p in _HTTP or p in QUERY_REFUSING_SCHEMES):
        return rest.partition("#")[2]
    return None


def url_query(url: str) -> tuple[str, str] | None:
    """(protocol, query) of the first part of ``url`` (alone or in a chain) that has a query
    (:func:`_part_query`: an HTTP(S) URL's ``?sig=...``, as signed URLs and Azure SAS tokens
    look; an object store's ``?X-Amz-Security-Token=...``); None where there is none."""
    return _first_part(url, _part_query)


def url_fragment(url: str) -> tuple[str, str] | None:
    """(protocol, fragment) of the first part of ``url`` (alone or in a chain) that has a
    fragment (:func:`_part_fragment`); None where there is none."""
    return _first_part(url, _part_fragment)


def _first_part(url: str, found: Callable[[str, str], str | None]) -> tuple[str, str] | None:
    """(protocol, what ``found(protocol, rest)`` finds) for the first part of ``url`` (alone
    or in a chain, ``a::b``) with a protocol where it finds something; None where none."""
    for bit in url.split("::"):
        protocol, sep, rest = bit.partition("://")
        got = found(protocol, rest) if sep else None
        if got is not None:
            return protocol, got
    return None


def http_query(url: str) -> tuple[str, str] | None:
    """(protocol, query) of the first part of ``url`` (alone or in a chain) that is an HTTP(S)
    URL with a query (``https://host/a.zarr?sig=...``); None where there is none."""
    found = url_query(url)
    return found if found is not None and found[0].lower() in _HTTP else None


def http_fragment(url: str) -> tuple[str, str] | None:
    """(protocol, fragment) of the first part of ``url`` (alone or in a chain) that is an
    HTTP(S) URL with a fragment (``http://host/in.zarr#x``), which no client sends to the
    server; None where there is none."""
    for bit in url.split("::"):
        protocol, sep, rest = bit.partition("://")
        if sep and protocol.lower() in _HTTP and "#" in rest:
            return protocol, rest.partition("#")[2]
    return None


def without_query(url: str, hidden: bool = True) -> str:
    """``url`` with the query of each of its parts that has one (:func:`url_query`: HTTP(S),
    an object store's) shown as ``?...`` (and a fragment as ``#...``): what may be said of
    such a URL (a query is often a credential, which is never printed or written, and so may
    be what follows a '#'); an HTTP part's user information (a password, a token, perhaps
    with a '?' or '#' unencoded in it) as ``***``. ``hidden=False``: the URL without them at
    all, as it is to be given."""
    bits = []
    for bit in url.split("::"):
        protocol, sep, rest = bit.partition("://")
        if sep and protocol.lower() in _HTTP:
            at, slash = rest.find("@"), rest.find("/")
            if at >= 0 and (slash < 0 or at < slash):  # helper-75: printed up to its '?'
                rest = f"***@{rest[at + 1 :]}"
                bit = f"{protocol}://{rest}"
        if sep and _part_query(protocol, rest) is not None:
            bit = f"{protocol}://{rest.partition('?')[0]}{'?...' if hidden else ''}"
        elif sep and _part_fragment(protocol, rest) is not None:
            bit = f"{protocol}://{rest.partition('#')[0]}{'#...' if hidden else ''}"
        bits.append(bit)
    return "::".join(bits)


#: Where a store's credentials go instead of its URL's query, as ``storage_options``.
_QUERY_CREDENTIALS = {
    "s3": "{key: ..., secret: ..., token: ...} (token: a session token, as "
    "X-Amz-Security-Token is)",
    "gs": "{token: ...}",
    "az": "{account_name: ..., account_key: ...} or {account_name: ..., sas_token: ...}",
}
for _p, _q in (("s3a", "s3"), ("gcs", "gs"), ("abfs", "az"), ("abfss", "az"), ("adl", "az")):
    _QUERY_CREDENTIALS[_p] = _QUERY_CREDENTIALS[_q]


def _store_query_problem(url: str, protocol: str, what: str) -> str:
    """Why ``url``, whose ``protocol`` part (an object store's, not HTTP) has a query or a
    fragment (``what``), cannot be used: in words that name the fix and never its values."""
    shown, plain = without_query(url), without_query(url, hidden=False)
    fix = _QUERY_CREDENTIALS.get(
        protocol.lower(), "the file system's own options (such as key, secret, token)"
    )
    mark = "?" if what == "query" else "#"
    lost = (
        "it drops it (with all that follows it), so the store would be another one"
        if what == "query" and protocol.lower() in _QUERY_DROPPING
        else "it would become part of every key's name"
    )
    return (
        f"{shown} has a {what} ('{mark}...'), which {protocol}:// does not read as one: "
        f"{lost}, and the {what}, often a credential, would be "
        "said in lines and summaries and stored with the output: give the URL without it, "
        f"{plain}, and credentials in storage_options: {fix} (never shown in lines or "
        f"summaries), or in the environment (where '{mark}' is part of the store's name: "
        "copy the store, or rename it)"
    )


def _dropped_question_mark_problem(url: str, protocol: str) -> str:
    """Why ``url``, whose ``protocol`` part holds a '?' that its file system drops with what
    follows it (:func:`_drops_question_mark`), cannot be used: the store read or written
    would be another one than the URL says (``ftp://host/out?.zarr`` is ``/out`` to fsspec,
    ``abfs://cont/out.zarr?`` is ``out.zarr`` to adlfs), and a line says the URL."""
    shown = without_query(url)
    read = []
    for bit in url.split("::"):
        p, sep, rest = bit.partition("://")
        if sep and p == protocol and _part_query(p, rest) is not None:
            bit = f"{p}://{rest.partition('?')[0]}"
        read.append(bit)
    return (
        f"{shown} holds '?', which {protocol}:// reads as the start of a query and drops (with "
        f"all that follows it), so the store would be {'::'.join(read)}, not the one named: "
        "where '?' is part of the store's name, copy the store, or rename it, without '?'"
    )


def url_query_problem(url: str, output: bool = False) -> str | None:
    """Why ``url``, a store's URL with a query (:func:`url_query`) or a fragment
    (:func:`url_fragment`) in an HTTP(S) or object-store part, cannot be used, in words that
    name the fix and never the query's values; None for any other URL (a local path or file
    URL, whose '?' and '#' are characters of a name, as fsspec reads them).

    An input's keys go into the URL's path, so a query there would end up before them
    (``in.zarr?sig=X/zarr.json``: fsspec and zarr-python ask for that), and a URL is said in
    summaries, run records and errors, while a query often holds a credential. fsspec's HTTP
    file system sends its ``params`` option (any extra keyword of aiohttp's requests) with
    every request it makes, keys in the path, and ``storage_options`` are masked wherever
    they are written: that is the fix. The pipeline writes no output over HTTP at all. An
    object store (s3fs, gcsfs, adlfs) reads no query at all: the keys were written under
    ``bucket/out.zarr?X-Amz-Security-Token=.../c/0/0``, and the token said and stored; its
    credentials go in storage_options."""
    found = url_query(url)
    if found is not None and found[0].lower() not in _HTTP:
        if "=" not in found[1] and "&" not in found[1]:  # a '?' its file system drops
            return _dropped_question_mark_problem(url, found[0])
        return _store_query_problem(url, found[0], "query")
    if found is None:
        fragment = url_fragment(url)
        if fragment is not None and fragment[0].lower() not in _HTTP:
            return _store_query_problem(url, fragment[0], "fragment")
        return _url_fragment_problem(url, output)
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


def _url_fragment_problem(url: str, output: bool) -> str | None:
    """Why ``url``, a store's URL with a fragment in an HTTP(S) part (:func:`http_fragment`),
    cannot be used; None for any other URL. A fragment is never sent to the server: the keys
    would be joined after it (``in.zarr#x/zarr.json``) and the server asked for ``in.zarr``
    alone (zarr-python warned, then 'JSONDecodeError'). What follows the '#' is never said (it
    could be a credential pasted with the URL)."""
    if http_fragment(url) is None:
        return None
    shown = without_query(url)
    if output:
        return (
            f"{shown} is an HTTP URL with a fragment ('#'): the pipeline writes no output over "
            "HTTP: choose a local folder or an object store for output.store"
        )
    return (
        f"{shown} holds '#', which starts a URL's fragment, never sent to the server, so it "
        "cannot be read as an HTTP store (its keys would follow the fragment): give the URL "
        "without it (where '#' is part of the store's name: copy the store to a local folder, "
        "or rename it)"
    )


def _part_protocol(bit: str) -> str:
    """The protocol of one part of a '::' chain as fsspec reads it (``fsspec.core._un_chain``):
    before its '://', or the part itself where it is a bare name (``zip``), else 'file'."""
    if "://" in bit:
        return bit.partition("://")[0]
    return bit if bit.isalpha() and bit.islower() else "file"


def _is_caching_layer(protocol: str) -> bool:
    """Whether fsspec's file system of ``protocol`` is one of its caching layers (a subclass
    of ``CachingFileSystem``: ``simplecache``, ``filecache``, ``blockcache``, ``cached``, and
    any alias or later one); False for a protocol fsspec does not know."""
    import fsspec
    from fsspec.implementations.cached import CachingFileSystem

    try:
        return issubclass(fsspec.get_filesystem_class(protocol), CachingFileSystem)
    except (ImportError, ValueError):
        return False


def caching_layer(url: str) -> str | None:
    """The protocol of the first part of ``url`` (alone or in a '::' chain) that is one of
    fsspec's caching layers (:func:`_is_caching_layer`), as written; None where none is."""
    for bit in url.split("::"):
        protocol = _part_protocol(bit)
        if _is_caching_layer(protocol):
            return protocol
    return None


def caching_layer_problem(url: str, output: bool = False) -> str | None:
    """Why ``url`` cannot be used where it reads through one of fsspec's caching layers
    (:func:`caching_layer`), with the fix; None for any other URL.

    A cache keeps the bytes of an earlier run (on disk, or in this process's instance of the
    file system: a notebook's, a warm cluster's worker's) without checking that the store
    changed since: a run computed from the stale chunks of a rewritten input, recorded its new
    identity and marked the output complete, and ``verify --all``, reading through the same
    cache, agreed. The pipeline reads each chunk once a run, so a cache gains a run nothing."""
    layer = caching_layer(url)
    if layer is None:
        return None
    rest = [b for b in url.split("::") if not _is_caching_layer(_part_protocol(b))]
    plain = _with_host_named(without_query("::".join(rest)))
    if len(rest) == 1:
        inner = _part_protocol(rest[0])
        options = (
            f"its '{layer}' key dropped and the options under its '{inner}' key, if any "
            f"({{{inner}: {{...}}}}), moved to its top level, as no chain is left"
        )
    else:
        options = f"its '{layer}' key dropped"
    what = "the output" if output else "the input"
    return (
        f"{without_query(url)} reads through fsspec's caching layer '{layer}::', which keeps "
        f"the bytes of an earlier run without checking that {what} changed, so a run could "
        "compute from stale chunks and verify would not see it: give the URL without it, "
        f"{plain} (the pipeline reads each chunk once a run), and storage_options with "
        f"{options}"
    )


def misplaced_options_problem(url: str, options: object) -> str | None:
    """Why ``options`` (a store's ``storage_options``) cannot go with ``url``: a top-level key
    that names a protocol fsspec knows and holds a mapping, which fsspec gives to the part of
    a '::' chain of that very name, on a URL that chains none so named (a plain
    ``http://...`` with ``{http: {params: ...}}``: fsspec passed ``http=`` on to aiohttp,
    "RuntimeError: Loop is not running"); None where there is none."""
    if not isinstance(options, dict):
        return None
    from fsspec.registry import known_implementations, registry

    bits = url.split("::")
    chained = len(bits) > 1 and _part_protocol(bits[0]) in {*known_implementations, *registry}
    protocols = [_part_protocol(b) for b in bits] if chained else []
    for key, value in options.items():
        if not isinstance(value, dict) or key in protocols:
            continue
        if key not in known_implementations and key not in registry:
            continue
        names = ", ".join(f"{said_option(k)}: ..." for k in value) or "..."
        if chained:
            return (
                f"storage_options' key {key!r} holds options for fsspec's {key!r} file system, "
                f"which {without_query(url)} does not chain (fsspec gives options under a "
                f"protocol's name to the part of the chain of that very name: "
                f"{', '.join(repr(p) for p in protocols)}): put them under the key of the "
                "part they are for"
            )
        return (
            f"storage_options' key {key!r} holds options for fsspec's {key!r} file system, "
            f"which fsspec takes by name only for a part of a '::' chain, and "
            f"{without_query(url)} is no chain: give those options at the top level of "
            f"storage_options ({{{names}}}), where they go to the URL's file system"
        )
    return None


def chain_options_hint(url: str, options: object) -> str | None:
    """Where ``url`` is a '::' chain and ``options`` (its ``storage_options``) has top-level
    options that name no protocol: fsspec gives those to the chain's outermost file system
    alone (``fsspec.core._un_chain``), so ``zip::http://...`` with ``{params: ...}`` sent no
    ``params`` to the server (an HTTP 403 from a server of signed URLs). Words naming where
    they go for the innermost one (``{http: {params: ...}}``); None elsewhere."""
    bits = url.split("::")
    if len(bits) < 2 or not isinstance(options, dict):
        return None
    from fsspec.registry import known_implementations, registry

    protocols = [_part_protocol(b) for b in bits]
    if protocols[0] not in known_implementations and protocols[0] not in registry:
        return None  # a local path with '::' in it, not a chain
    names = [
        str(said_option(k)) for k in options if k not in known_implementations and k not in registry
    ]
    if not names:
        return None
    inner = protocols[-1]
    shown = ", ".join(f"{n}: ..." for n in names)
    return (
        f"storage_options' top-level options ({shown}) go to the chain's outermost file "
        f"system ({protocols[0]!r}) alone: those of {inner!r}, which reaches the server, go "
        f"under its name ({{{inner}: {{{shown}}}}})"
    )


#: Schemes whose URLs take no user information: a bucket's name holds neither ':' nor '@'
#: (s3fs and gcsfs read ``s3://KEY:SECRET@bucket/...`` as a bucket of that name, botocore's
#: error then quoting it whole), and a file URL names no user.
_NO_USERINFO = frozenset(("s3", "s3a", "gs", "gcs", "file", "local"))

#: Schemes whose user part is no credential but a container (adlfs:
#: ``abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/path``): there only a password
#: (``user:password@``) is refused.
_USER_IS_NAME = frozenset(("az", "abfs", "abfss", "adl"))

#: Where each file system's credentials go instead, as ``storage_options``.
_CREDENTIAL_OPTIONS = {
    "s3": "{key: ..., secret: ...}",
    "s3a": "{key: ..., secret: ...}",
    "gs": "{token: ...}",
    "gcs": "{token: ...}",
}


def _userinfo_end(protocol: str, rest: str) -> int:
    """Where the user information of a URL part ``protocol://rest`` ends (the index of its
    '@' in ``rest``), for a protocol that takes none (:data:`_NO_USERINFO`) or no password
    (:data:`_USER_IS_NAME`); -1 where it has none, or may have one. It ends at the LAST '@'
    of the authority (before the first '/'): a secret may hold '@'
    (``s3://KEY:s3cr@t@bucket/``, whose part after its first '@' had been shown and advised).
    A secret may hold '/' too (an AWS secret key often does: ``s3://KEY:a/b@bucket/``), so a
    first segment that holds ':', which no bucket's name does, runs to the first '@' after
    it, and on to the last '@' of the segment that '@' is in. A path holding '@' or ':'
    (``s3://bucket/a:b@c/``) is no user information."""
    p = protocol.lower()
    if p not in _NO_USERINFO and p not in _USER_IS_NAME:
        return -1
    first = rest.split("/", 1)[0]
    colon = first.find(":")
    if "@" in first and (p in _NO_USERINFO or 0 <= colon < first.rfind("@")):
        return first.rfind("@")
    if colon >= 0 and (p in _USER_IS_NAME or p not in ("file", "local")):
        at = rest.find("@", colon)
        if at < 0:
            return -1
        slash = rest.find("/", at)
        return rest.rfind("@", 0, slash if slash >= 0 else len(rest))
    return -1


def _password_start(protocol: str, rest: str, end: int) -> int:
    """Where what :func:`without_userinfo` hides of ``rest`` (a URL part's after its '://',
    its user information ending at ``end``) begins: after the user and its ':' for a protocol
    whose user is a name (:data:`_USER_IS_NAME`: ``abfs://CONTAINER:KEY@account``, whose
    container is no credential), else 0 (all of it: an S3 key id and secret)."""
    if protocol.lower() in _USER_IS_NAME:
        colon = rest.find(":", 0, end)
        if colon >= 0:
            return colon + 1
    return 0


def url_userinfo(url: str) -> str | None:
    """The protocol of the first part of ``url`` (alone or in a '::' chain) that carries user
    information its file system does not take (``s3://KEY:SECRET@bucket/in.zarr``,
    ``gs://TOKEN@bucket/``, ``abfs://container:KEY@account...``: :func:`_userinfo_end`); None
    where none does. HTTP(S), FTP, SFTP and SMB take a user and password in their URLs; they
    are not refused (their passwords are hidden wherever a URL is said)."""
    for bit in url.split("::"):
        protocol, sep, rest = bit.partition("://")
        if sep and _userinfo_end(protocol, rest) >= 0:
            return protocol
    return None


def without_userinfo(url: str, hidden: str = "***@") -> str:
    """``url`` with the user information of each part that :func:`url_userinfo` refuses
    replaced by ``hidden`` (``s3://***@bucket/in.zarr``; '' for the URL without it); where the
    user is a name (:data:`_USER_IS_NAME`), only its password, the name kept
    (``abfs://container:***@account...``; ``abfs://container@account...`` without it)."""
    bits = []
    for bit in url.split("::"):
        protocol, sep, rest = bit.partition("://")
        end = _userinfo_end(protocol, rest) if sep else -1
        if end < 0:
            bits.append(bit)
            continue
        start = _password_start(protocol, rest, end)
        if start:  # the name kept: 'cont:***@' or 'cont@'
            kept = rest[: start - 1]
            bits.append(f"{protocol}://{kept}{':' + hidden if hidden else '@'}{rest[end + 1 :]}")
        else:
            bits.append(f"{protocol}://{hidden}{rest[end + 1 :]}")
    return "::".join(bits)


def url_userinfo_problem(url: str) -> str | None:
    """Why ``url`` cannot be used where a part carries credentials (or a user) that its file
    system does not take from a URL (:func:`url_userinfo`), in words that name the fix and
    never the credentials; None for any other URL. s3fs read ``s3://KEY:SECRET@bucket/...``
    as a bucket named ``KEY:SECRET@bucket``, and botocore's error, several lines long, quoted
    it whole (brk76); a key and secret go in ``storage_options``, which no line or summary
    shows."""
    protocol = url_userinfo(url)
    if protocol is None:
        return None
    shown, plain = without_userinfo(url), _with_host_named(without_userinfo(url, ""))
    p = protocol.lower()
    if p in ("file", "local"):
        return (
            f"{shown} names a user (or a password) before its '@', which a file URL does not "
            f"take: give it without them, {plain} (a local file's access is its permissions)"
        )
    fix = _CREDENTIAL_OPTIONS.get(p, "{account_name: ..., account_key: ...} (or sas_token)")
    return (
        f"{shown} carries credentials before its '@', which {protocol}:// does not take from "
        f"a URL (they would be read as part of the bucket's or container's name): give the "
        f"URL without them, {plain}, and the credentials in storage_options: {fix} (never "
        "shown in lines or summaries), or in the environment"
    )


#: Options that fsspec's file systems take as true or false through their ``**kwargs``
#: (``AbstractFileSystem``'s metaclass and its listings cache), in no ``__init__``'s signature.
_FSSPEC_BOOLS = ("skip_instance_cache", "use_listings_cache")
#: Options whose default is a boolean but that take text too: gcsfs's ``requester_pays`` (a
#: project's ID to bill, as text).
_NOT_ONLY_BOOL = {("GCSFileSystem", "requester_pays")}


def _bool_names(cls: type) -> set[str]:
    """The options the file system class ``cls`` takes as true or false: those whose default
    is a boolean in the ``__init__`` of it or a class it is made of (read from the library's
    signatures, so a library's version is not guessed at), and fsspec's own
    (:data:`_FSSPEC_BOOLS`)."""
    names = set(_FSSPEC_BOOLS)
    for klass, _, params in _inits(cls):
        names |= {
            n
            for n, p in params.items()
            if isinstance(p.default, bool) and (klass.__name__, n) not in _NOT_ONLY_BOOL
        }
    return names


def _inits(cls: type) -> Iterator[tuple[type, Any, Mapping[str, inspect.Parameter]]]:
    """Each class of the file system class ``cls``'s MRO (``cls`` and the classes it is made
    of), with its own ``__init__`` (None where it has none) and that ``__init__``'s parameters
    (none where it has none), as (the class, its ``__init__``, the parameters): the
    signatures :func:`_bool_names`, :func:`mapping_option` and :func:`_text_names` read a
    library's options from. A class whose ``__init__`` gives no signature (a builtin's) is
    left out."""
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        try:
            params = inspect.signature(init).parameters if init is not None else {}
        except (TypeError, ValueError):
            continue
        yield klass, init, params


def _nested_bool_names(cls: type) -> dict[tuple[str, ...], tuple[str, set[str]]]:
    """{where in the options (keys, ``()`` for the options themselves): (who takes them, the
    names taken as true or false there)} for what a file system passes on to its client:
    fsspec's HTTP file system its other options to every aiohttp request and
    ``client_kwargs`` to aiohttp's session; s3fs ``client_kwargs`` to botocore's
    ``create_client`` (``use_ssl``) and ``config_kwargs`` to botocore's ``Config``, its
    own and its mappings' (``s3``, ``proxies_config``: :func:`_botocore_config_bools`)."""

    def bools(fn: Any) -> set[str]:
        params = inspect.signature(fn).parameters
        return {n for n, p in params.items() if isinstance(p.default, bool)}

    # a subclass of fsspec's HTTP file system has imported its module (and aiohttp): any
    # other file system's options, read as the config is, import neither
    http = sys.modules.get("fsspec.implementations.http")
    if http is not None and issubclass(cls, http.HTTPFileSystem):
        from aiohttp import ClientSession

        return {
            (): ("each aiohttp request", bools(ClientSession._request)),
            ("client_kwargs",): ("aiohttp's ClientSession", bools(ClientSession)),
        }
    if _is_s3fs(cls):
        from botocore.session import Session

        found: dict[tuple[str, ...], tuple[str, set[str]]] = {
            ("client_kwargs",): ("botocore's client", bools(Session.create_client))
        }
        for place, names in _botocore_config_bools().items():
            found[("config_kwargs", *place)] = ("botocore's Config", names)
        return found
    return {}


def _botocore_config_bools() -> dict[tuple[str, ...], set[str]]:
    """The options botocore's ``Config`` takes as true or false, by where they stand under
    s3fs's ``config_kwargs`` (``()``: its own, ``tcp_keepalive``, ...; ``("s3",)``:
    ``use_accelerate_endpoint``, ...; ``("proxies_config",)``:
    ``proxy_use_forwarding_for_https``), as :func:`botocore_config_kinds` reads them (botocore
    tests them for truth: ``'false'`` was true)."""
    return {
        place: {n for n, kind in names.items() if kind == "bool"}
        for place, names in botocore_config_kinds().items()
    }


#: How botocore's ``Config`` docstring types its options (``:type NAME: TYPE``), as the kinds
#: :func:`botocore_config_kinds` gives: ``str, (str, str)`` is ``client_cert``'s, a path or a
#: certificate's and its key's.
_CONFIG_TYPES = {
    "bool": "bool",
    "int": "int",
    "float or int": "number",
    "str": "text",
    "string": "text",
    "dict": "mapping",
    "str, (str, str)": "pair",
}


@functools.lru_cache(maxsize=1)
def botocore_config_kinds() -> dict[tuple[str, ...], dict[str, str]]:
    """{where under s3fs's ``config_kwargs`` (``()``: botocore ``Config``'s own options; a
    mapping option's name, ``("retries",)``): {option: its kind}}, the kinds ``bool``,
    ``int`` (a whole number), ``number``, ``text``, ``mapping`` and ``pair`` (a path, or a
    list of two: ``client_cert``), read from botocore's ``Config`` docstring, so its version
    is not guessed at (its signature gives every default as None): its options' ``:type``
    (:data:`_CONFIG_TYPES`), and the keys each mapping option's ``:param`` lists
    (``* ``NAME`` -- ...``, the least indented; the values a key takes are listed so too,
    deeper), by their words: whether something is done or "must be (a) boolean" a boolean,
    "integer" a whole number, a "tuple" a pair, a "string" or "path" text. ``proxies``
    (``{'http': 'foo.bar:3128', ...}`` in its docstring) takes a proxy's URL as text at each
    key, which :func:`_text_names` reads from what is given."""
    from botocore.config import Config

    doc = Config.__doc__ or ""
    typed = re.findall(r":type (\w+): (.+)$", doc, re.M)
    kinds: dict[tuple[str, ...], dict[str, str]] = {
        (): {n: _CONFIG_TYPES[t.strip()] for n, t in typed if t.strip() in _CONFIG_TYPES}
    }
    for name, kind in list(kinds[()].items()):
        if kind != "mapping":
            continue
        described: dict[str, str] = {}
        for key, words, _ in _config_items(doc, name):
            said = " ".join(words.split())
            if re.search(r"\bwhether\b|must be (?:a )?boolean", said, re.I):
                described[key] = "bool"
            elif re.search(r"\binteger\b", said, re.I):
                described[key] = "int"
            elif re.search(r"\btuple\b", said, re.I):
                described[key] = "pair"
            elif re.search(r"\bstring\b|\bpath\b", said, re.I):
                described[key] = "text"
        if described:
            kinds[(name,)] = described
    return kinds


def _config_items(doc: str, name: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """The items botocore's ``Config`` docstring ``doc`` lists under ``:param NAME:`` (``*
    ``KEY`` -- words``), the least indented, as (each one's key, its words, the keys of the
    items listed deeper under it: the values it takes, ``s3``'s ``addressing_style``'s
    ``auto``, ``virtual`` and ``path``); none where it lists none."""
    start = doc.find(f":param {name}:")
    if start < 0:
        return []
    end = doc.find(":type", start)
    items = re.findall(
        r"\n( *)\* ``(\w+)``(.*?)(?=\n *\* ``|\Z)", doc[start : end if end >= 0 else None], re.S
    )
    least = min((len(indent) for indent, _, _ in items), default=0)
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for indent, key, words in items:
        if len(indent) == least:
            out.append((key, words, ()))
        elif out:
            out[-1] = (out[-1][0], out[-1][1], (*out[-1][2], key))
    return out


@functools.lru_cache(maxsize=1)
def botocore_config_choices() -> dict[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """{where under s3fs's ``config_kwargs`` (``()``: botocore ``Config``'s own options; a
    mapping option's name, ``("s3",)``): {option: the values it takes}}, for the options
    taken as text whose values botocore's ``Config`` docstring lists (its source of truth
    here, as for :func:`botocore_config_kinds`): its own, each value an item of its
    ``:param`` (``request_checksum_calculation`` and ``response_checksum_validation``:
    ``when_supported``, ``when_required``; ``account_id_endpoint_mode``), and its mappings'
    keys, each value an item listed under the key (``s3``'s ``addressing_style``: ``auto``,
    ``virtual``, ``path``, its ``us_east_1_regional_endpoint``; ``retries``' ``mode``:
    ``legacy``, ``standard``, ``adaptive``). botocore checks them itself, in its code, as it
    makes its ``Config`` or client (:func:`_botocore_refuses` asks it), which had been the
    first word of them, where the plan opened the store, naming no line."""
    from botocore.config import Config

    doc = Config.__doc__ or ""
    kinds = botocore_config_kinds()
    choices: dict[tuple[str, ...], dict[str, tuple[str, ...]]] = {}
    for name, kind in kinds[()].items():
        if kind == "text":
            values = tuple(key for key, _, _ in _config_items(doc, name))
            if values:
                choices.setdefault((), {})[name] = values
        elif kind == "mapping":
            for key, _, values in _config_items(doc, name):
                if values and kinds.get((name,), {}).get(key) == "text":
                    choices.setdefault((name,), {})[key] = values
    return choices


@functools.lru_cache(maxsize=64)
def _botocore_refuses(place: tuple[str, ...], name: str, value: str) -> bool:
    """Whether botocore refuses ``value`` for ``config_kwargs``' option ``name`` (under
    ``place``) where it makes its ``Config`` and an S3 client of it (nothing is sent): its
    own check, which the values its docstring lists (:func:`botocore_config_choices`) need
    not match whole (it takes ``WHEN_SUPPORTED``, lowered, for ``when_supported``). False
    where a client without it cannot be made here either (an ``AWS_PROFILE`` naming no
    profile): nothing is known of the value then."""
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError
    from botocore.session import Session

    def made(**given: Any) -> bool:
        try:
            Session().create_client(
                "s3",
                region_name="us-east-1",
                endpoint_url="http://127.0.0.1:1",
                aws_access_key_id="x",
                aws_secret_access_key="x",
                config=Config(**given),
            )
        except BotoCoreError:
            return False
        return True

    given: dict[str, Any] = {place[0]: {name: value}} if place else {name: value}
    return made() and not made(**given)


def signature_versions() -> tuple[frozenset[str], tuple[str, ...]]:
    """The signature versions botocore signs with (``botocore.auth.AUTH_TYPE_MAPS``, which
    its signer looks a client's ``signature_version`` up in: one not there was its
    ``UnknownSignatureVersionError`` at the first request), and those a line names (the
    plain ones: ``v4``, ``s3v4``, ..., not ``v4-query``)."""
    import botocore.auth

    known = frozenset(botocore.auth.AUTH_TYPE_MAPS)
    return known, tuple(sorted(v for v in known if "-" not in v))


def text_bool_option(url: str, options: object) -> tuple[tuple[str, ...], str] | None:
    """The first option in ``options`` (a store's ``storage_options``) that the file system
    of ``url`` (or a file system it chains, under its protocol's name in ``options``), or
    the client it passes the option to, takes as true or false (:func:`_bool_names`,
    :func:`_nested_bool_names`) and that is given as text, as (its keys in ``options``,
    who takes it); None where there is none. Each library tests such an option for truth,
    so ``anon: 'false'`` (quoted, or ``"false"`` in a config given as a mapping) was true,
    and s3fs sent unsigned requests (another credentials mode, silently). The libraries are
    those the URL's protocols name, which :func:`caching_layer_problem` has imported for
    the config already; nothing is asked of them for options that hold no text. The code
    that reads the libraries' names here is the one both the config's check
    (:func:`~pipeline.config.problems.checked`, at the option's line) and the store's
    (:func:`~pipeline.store.location.storage_option_error`, where it is opened) ask,
    through :func:`storage_option_problem`."""
    if not isinstance(options, dict) or not _holds_text(options):
        return None
    for cls, at, given in _file_systems(url, options):
        library = _library(cls)
        for n in sorted(_bool_names(cls)):
            if isinstance(given.get(n), str):
                return (*at, n), library
        for inner, (taker, names) in _nested_bool_names(cls).items():
            held: Any = given
            for step in inner:
                held = held.get(step) if isinstance(held, dict) else None
            if isinstance(held, dict):
                for n in sorted(names):
                    if isinstance(held.get(n), str):
                        return (*at, *inner, n), taker
    return None


def _protocol_options(url: str, options: dict) -> list[tuple[str, tuple[str, ...], Any]]:
    """The file systems ``url`` names and the options each is given, as (its protocol, the
    options' keys in ``options``, them): the first's are ``options``; a chained URL's others'
    are under their protocols' names (``zip::s3://...`` with ``{s3: {...}}``)."""
    bits = url.split("::")
    protocols = [_part_protocol(bit) for bit in bits] if len(bits) > 1 else [_protocol(url)]
    where: list[tuple[str, tuple[str, ...], Any]] = [(protocols[0], (), options)]
    where += [(p, (p,), options[p]) for p in protocols if isinstance(options.get(p), dict)]
    return where


def _file_systems(url: str, options: dict) -> Iterator[tuple[type, tuple[str, ...], dict]]:
    """The file system classes ``url`` names that fsspec has (imported) and the options each
    is given as a mapping (:func:`_protocol_options`), as (the class, the options' keys in
    ``options``, them): what :func:`text_bool_option`, :func:`text_option`,
    :func:`async_option` and :func:`mapping_option` look through."""
    import fsspec

    for protocol, at, given in _protocol_options(url, options):
        if not isinstance(given, dict):
            continue
        try:
            cls = fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError):
            continue
        yield cls, at, given


def _is_s3fs(cls: type) -> bool:
    """Whether the file system class ``cls`` is s3fs's (whose options botocore takes)."""
    return cls.__module__.split(".")[0] == "s3fs"


def _s3fs_options(url: str, options: dict) -> Iterator[tuple[tuple[str, ...], dict]]:
    """The options each s3fs file system ``url`` names is given as a mapping, as (their keys
    in ``options``, them): :func:`_file_systems`' s3fs ones, what the checks of the options
    s3fs passes to botocore look through."""
    for cls, at, given in _file_systems(url, options):
        if _is_s3fs(cls):
            yield at, given


def _config_places(
    config: object, places: Iterable[tuple[str, ...]]
) -> Iterator[tuple[tuple[str, ...], dict]]:
    """Each place of ``places`` (keys under s3fs's ``config_kwargs``: ``()`` botocore
    ``Config``'s own options, ``("retries",)`` a mapping of them) that ``config`` holds as
    a mapping, as (the place, the mapping there)."""
    for place in places:
        held: Any = config
        for step in place:
            held = held.get(step) if isinstance(held, dict) else None
        if isinstance(held, dict):
            yield place, held


def _library(cls: type) -> str:
    """A file system class named with its library: "s3fs's S3FileSystem"."""
    return f"{cls.__module__.split('.')[0]}'s {cls.__name__}"


def _protocol(url: str) -> str:
    """The protocol of a URL that chains nothing: before its '://', else 'file' (a path)."""
    return url.partition("://")[0] if "://" in url else "file"


def _holds_text(options: dict[Any, Any]) -> bool:
    """Whether ``options``, or a mapping in them at any depth, holds a value that is text."""
    return any(
        isinstance(v, str) or (isinstance(v, dict) and _holds_text(v)) for v in options.values()
    )


def text_bool_said(name: str, taker: str) -> str:
    """What a line says of the option ``name`` that ``taker`` takes as true or false, given
    as text (:func:`text_bool_option`), after its key: the fix, never the value."""
    return (
        f"given as text, where {taker} takes true or false (to it any text, 'false' too, is "
        f"true, or no value): write {name}: false or {name}: true, a YAML boolean, unquoted "
        "(its value is not said here)"
    )


def async_option(url: str, options: object) -> tuple[tuple[str, ...], str] | None:
    """Where ``options`` (a store's ``storage_options``, or a chained file system's under its
    protocol's name) give ``asynchronous: true`` for a file system of ``url`` that has an
    asynchronous mode (s3fs, fsspec's HTTP file system), as (the option's keys in
    ``options``, the file system's class name); None where none does (a local file system
    takes the option and ignores it). It makes one whose calls must come from a running
    event loop, and the pipeline's reads and writes call its blocking methods, which failed
    with fsspec's bare "RuntimeError: Loop is not running"."""
    if not isinstance(options, dict):
        return None
    for cls, at, given in _file_systems(url, options):
        if given.get("asynchronous") and getattr(cls, "async_impl", False):
            return (*at, "asynchronous"), cls.__name__
    return None


def async_said(name: str) -> str:
    """What a line says of ``asynchronous: true`` (:func:`async_option`) for a file system of
    the class ``name``, after its key: why, and the fix."""
    return (
        f"makes {name} one for code that runs in an event loop, which the pipeline's reads "
        "and writes do not: remove asynchronous (the pipeline runs its requests concurrently "
        "itself)"
    )


def mapping_option(url: str, options: object) -> tuple[tuple[str, ...], str, Any] | None:
    """The first option in ``options`` (a store's ``storage_options``, or a chained file
    system's under its protocol's name) that the file system of ``url`` takes as a mapping
    of keyword arguments and that is given as another kind (``client_kwargs: 5``, text, a
    list), as (its keys in ``options``, who takes it, the value); None where
    there is none. Such options are those named ``*_kwargs`` in the ``__init__`` of the class
    or a class it is made of (read from the library's signatures: s3fs's ``client_kwargs``,
    ``config_kwargs`` and ``s3_additional_kwargs``, fsspec's HTTP ``client_kwargs``,
    WebHDFS's ``kerb_kwargs``), and botocore's ``Config`` mappings in s3fs's
    ``config_kwargs`` (typed ``dict``: :func:`botocore_config_kinds`). s3fs had failed with a bare
    ``AttributeError: 'int' object has no attribute 'copy'``, at plan time (and
    ``s3_additional_kwargs`` uncaught, as a traceback). None or absent is taken."""
    if not isinstance(options, dict):
        return None
    for cls, at, given in _file_systems(url, options):
        names: set[str] = set()
        for _, _, params in _inits(cls):
            names |= {
                n
                for n, p in params.items()
                if n.endswith("_kwargs") and p.kind is not p.VAR_KEYWORD
            }
        for n in sorted(names):
            value = given.get(n)
            if value is not None and not isinstance(value, dict):
                return (*at, n), _library(cls), value
        config = given.get("config_kwargs")
        if _is_s3fs(cls) and isinstance(config, dict):
            kinds = botocore_config_kinds()[()]
            for n in sorted(n for n, kind in kinds.items() if kind == "mapping"):
                value = config.get(n)
                if value is not None and not isinstance(value, dict):
                    return (*at, "config_kwargs", n), "botocore's Config", value
    return None


def mapping_said(name: str, taker: str, value: Any) -> str:
    """What a line says of the option ``name`` that ``taker`` takes as a mapping, given as
    ``value`` of another kind (:func:`mapping_option`), after its key: what it takes, the
    kind given (:func:`~pipeline.errors.kind_said`, never the value), and the fix."""
    from pipeline.errors import kind_said

    return (
        f"given as {kind_said(value)}, where {taker} takes a mapping of options: write it "
        f"as one ({name}: {{option: value, ...}}, each option indented under {name}:), or "
        "remove it (its value is not said here)"
    )


def text_option(url: str, options: object) -> tuple[tuple[str, ...], str, Any] | None:
    """The first option in ``options`` (a store's ``storage_options``, or a chained file
    system's under its protocol's name) that the file system of ``url``, or the client it
    passes the option to, takes as text (:func:`_text_names`: ``endpoint_url``, ``key``,
    ``secret`` and their aliases ``username`` and ``password``, ``token``, ``profile``,
    ``client_kwargs``' ``region_name``, ...) and that is given as a kind a config makes
    that is no text (a number, true/false, a date, a list, a mapping), as (its keys in
    ``options``, who takes it, the value); None where there is none. s3fs and botocore had
    failed where the store was opened with their bare words, naming no option
    (``endpoint_url: 5``: "TypeError: 'int' object is not iterable"; a list: "unhashable
    type: 'list'"; ``region_name: 5``: "expected string or bytes-like object"). None or
    absent is taken, and so is an object a caller of the API gives (botocore's ``UNSIGNED``
    as a ``signature_version``). ``config_kwargs``' ``sigv4a_signing_region_set`` is text
    too: botocore's ``Config`` hands it as it is to the signer as its region (the regions
    separated by commas, ``*`` for all; botocore joins an endpoint rule's list so itself),
    which awscrt takes only as text."""
    if not isinstance(options, dict):
        return None
    import datetime

    kinds = (int, float, list, tuple, dict, datetime.date)  # bool is an int
    for cls, at, given in _file_systems(url, options):
        for inner, (taker, names) in _text_names(cls, given).items():
            held: Any = given
            for step in inner:
                held = held.get(step) if isinstance(held, dict) else None
            if not isinstance(held, dict):
                continue
            for n in sorted(names):
                value = held.get(n)
                if isinstance(value, kinds):
                    return (*at, *inner, n), taker, value
    return None


#: s3fs's aliases of ``key`` and ``secret`` ({alias: the option}), which its ``__init__``
#: takes (its default None) and puts in their place, and neither its signature nor its
#: docstring types: text, as they are. Given as a list or a number, they had passed the
#: config and been refused where the store was opened, as "key is not a string", naming
#: the option not given.
_S3FS_ALIASES = {"username": "key", "password": "secret"}


def _text_names(
    cls: type, given: dict[Any, Any] | None = None
) -> dict[tuple[str, ...], tuple[str, set[str]]]:
    """The options that the file system ``cls``, and the clients it passes options to, take
    as text, by where they stand in its options (``()``: its own; ``("client_kwargs",)``),
    as (who takes them, their names), read from the libraries: each ``__init__`` of the
    class and the classes it is made of, its parameters with a text default, and those its
    docstrings type as text (numpydoc's ``key : string (None)``); for s3fs, botocore's too,
    from their docstrings' ``:type NAME: str`` (the session's, to which s3fs passes the
    options it does not take itself, ``profile``; the client's, ``client_kwargs``; the
    ``Config``'s, ``config_kwargs``, and its mappings' keys that it describes as text,
    ``s3``'s ``addressing_style``, ... and every proxy's URL in ``proxies``:
    :func:`botocore_config_kinds`), s3fs's aliases of ``key`` and ``secret``
    (:data:`_S3FS_ALIASES`), which nothing types, and, where ``given`` (the file system's
    options) has ``s3_additional_kwargs``, the request parameters S3's API takes as text
    (:func:`_s3_request_text_names`)."""
    doc_text = re.compile(r"^\s*(\w+)\s*:\s*(?:str|string)\s*(?:\([^)]*\))?\s*$", re.M)
    names: set[str] = set()
    for klass, init, params in _inits(cls):
        names |= {n for n, p in params.items() if isinstance(p.default, str)}
        for doc in (klass.__doc__, getattr(init, "__doc__", None)):
            names |= set(doc_text.findall(doc or ""))
    library = f"{cls.__module__.split('.')[0]}'s {cls.__name__}"
    if cls.__module__.split(".")[0] != "s3fs":
        return {(): (library, names)}
    names |= set(_S3FS_ALIASES)
    from botocore.config import Config
    from botocore.session import Session

    def typed(doc: str | None) -> set[str]:
        return set(re.findall(r":type (\w+): (?:str|string)\s*$", doc or "", re.M))

    found = {
        (): (library, names | typed(Session.__init__.__doc__)),
        ("client_kwargs",): ("botocore's client", typed(Session.create_client.__doc__)),
        ("config_kwargs",): ("botocore's Config", typed(Config.__doc__)),
    }
    for place, kinds in botocore_config_kinds().items():  # s3's addressing_style, ...
        if place:
            texts = {n for n, kind in kinds.items() if kind == "text"}
            found[("config_kwargs", *place)] = ("botocore's Config", texts)
    config = (given or {}).get("config_kwargs")
    proxies = config.get("proxies") if isinstance(config, dict) else None
    if isinstance(proxies, dict):  # a proxy's URL at each scheme or host: text
        names = {n for n in proxies if isinstance(n, str)}
        found[("config_kwargs", "proxies")] = (PROXIES_TAKER, names)
    if isinstance((given or {}).get("s3_additional_kwargs"), dict):  # the model read if asked
        found[("s3_additional_kwargs",)] = ("S3's API", set(_s3_request_text_names()))
    return found


@functools.lru_cache(maxsize=1)
def _s3_request_text_names() -> frozenset[str]:
    """The request parameters that S3's API takes as text in every operation that has them,
    read from botocore's service model (``ExpectedBucketOwner``, ``ServerSideEncryption``,
    ``RequestPayer``, ...): s3fs passes its ``s3_additional_kwargs`` to each request whose
    operation takes them, and botocore refused another kind there with its bare
    ParamValidationError, naming no option, its value in its words (h74a:
    ``ExpectedBucketOwner: 123456789012``, an account's number, which YAML reads as one).
    One that some operation takes otherwise (``Tagging``: a structure or text) is left out."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("s3")
    kinds: dict[str, set[str]] = {}
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        for member, inner in shape.members.items() if shape is not None else ():
            kinds.setdefault(member, set()).add(inner.type_name)
    return frozenset(n for n, k in kinds.items() if k == {"string"})


#: What each kind of value that botocore takes (:func:`kind_option`) is, as a line says it,
#: and how one is written in YAML.
KINDS_SAID = {
    "bool": ("true or false", "true or false, a YAML boolean, unquoted"),
    "int": ("a whole number", "a whole number, unquoted (3, not '3')"),
    "number": ("a number", "a number, unquoted (2.5, not '2.5')"),
    "text": ("text", "text, quoted where YAML would read it as another kind"),
    "pair": ("a path, or a list of two paths", "a path ('/etc/cert.pem') or [CERT, KEY]"),
    "mapping": ("a mapping", "a mapping, each key indented under it"),
    "list": ("a list", "a list ([a, b])"),
    "timestamp": (
        "a date and time",
        "a YAML timestamp, 2030-01-01T00:00:00Z, or seconds since 1970 (a date alone is none)",
    ),
    "blob": ("text or bytes", "text"),
}

#: The kinds of botocore's service model's shapes (``shape.type_name``), as
#: :data:`KINDS_SAID` names them: botocore's ``ParamValidator`` refuses any other Python type
#: for each (a boolean among integers too, here: ``ContentLength: true`` had been sent as 1).
_SHAPE_KINDS = {
    "boolean": "bool",
    "integer": "int",
    "long": "int",
    "float": "number",
    "double": "number",
    "string": "text",
    "timestamp": "timestamp",
    "blob": "blob",
    "structure": "mapping",
    "map": "mapping",
    "list": "list",
}


def _fits(kind: str, value: Any) -> bool:
    """Whether ``value`` is of the ``kind`` (:data:`KINDS_SAID`) that botocore takes: as its
    ``ParamValidator`` checks a request's parameters (``botocore.validate``'s
    ``SCALAR_TYPES`` and ``CONTAINER_TYPES``; a timestamp is a ``datetime``, or text or a
    number botocore's own parser reads), but never a boolean for a number; and for
    ``Config``'s own numbers as its HTTP layer takes them (a whole float a whole number)."""
    import datetime
    import numbers

    from botocore.validate import ParamValidator

    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return number and float(value) == int(value)
    if kind == "number":
        return number
    if kind == "text":
        return isinstance(value, str)
    if kind == "pair":
        path = (str, os.PathLike)
        return isinstance(value, path) or (
            isinstance(value, (list, tuple))
            and len(value) == 2
            and all(isinstance(v, path) for v in value)
        )
    if kind == "mapping":
        return isinstance(value, ParamValidator.CONTAINER_TYPES["map"])
    if kind == "list":
        return isinstance(value, ParamValidator.CONTAINER_TYPES["list"])
    if kind == "blob":
        return isinstance(value, (bytes, bytearray, str))
    if kind == "timestamp":
        if isinstance(value, datetime.datetime):
            return True
        if not isinstance(value, str) and not number:
            return False  # a date alone too: botocore's parser refuses it
        from botocore.utils import parse_to_aware_datetime

        try:
            parse_to_aware_datetime(value)
        except (TypeError, ValueError, AttributeError, OverflowError):
            return False
        return True
    return True


def kind_option(url: str, options: object) -> tuple[tuple[str, ...], str, str, Any] | None:
    """The first option in ``options`` (a store's ``storage_options``, or a chained file
    system's under its protocol's name) that s3fs passes to botocore, which takes it as a
    number, a pair of paths, true or false, a date and time, a mapping or a list, given as
    another kind, as (its keys in ``options``, who takes it, the kind it takes, as
    :data:`KINDS_SAID` names it, the value); None where there is none. Text where text is
    taken, true or false given as text to ``Config``, and a mapping option's own kind are
    :func:`text_option`'s, :func:`text_bool_option`'s and :func:`mapping_option`'s. They are:
    ``config_kwargs``' numbers and pairs, its own and its mappings'
    (:func:`botocore_config_kinds`: ``connect_timeout``, ``max_pool_connections``,
    ``client_cert``, ``retries``' ``max_attempts``, ``proxies_config``'s
    ``proxy_client_cert``), which botocore met only when it made its client
    ("TypeError: '<' not supported between ...") or sent ("HTTPClientError: An HTTP Client
    raised an unhandled exception"), or never (a ``client_cert`` on a plain ``http://``
    endpoint); and ``s3_additional_kwargs``' request parameters of every kind S3's API
    takes, read from botocore's service model (:func:`_s3_request_kinds`), and inside a
    mapping or structure, its values' (``Metadata``' text), which botocore had refused with
    its bare ParamValidationError, its value in its words, at the first request that took
    them, after the output's metadata was written (``BucketKeyEnabled: 'yes'``,
    ``ContentLength: '12'``, ``Expires: 2030-01-01``, a date without a time)."""
    if not isinstance(options, dict):
        return None
    for at, given in _s3fs_options(url, options):
        # botocore is imported for an s3fs file system only (0.1-0.2 s: a local store's
        # plan had imported it for nothing)
        table = botocore_config_kinds()
        for place, held in _config_places(given.get("config_kwargs"), table):
            kinds = table[place]
            for n in sorted(n for n, k in kinds.items() if k in ("int", "number", "pair")):
                value = held.get(n)
                if value is not None and not _fits(kinds[n], value):
                    return (*at, "config_kwargs", *place, n), "botocore's Config", kinds[n], value
        extra = given.get("s3_additional_kwargs")
        if isinstance(extra, dict):
            found = _request_kind(extra, _s3_request_kinds())
            if found is not None:
                keys, kind, value = found
                return (*at, "s3_additional_kwargs", *keys), "S3's API", kind, value
    return None


def unknown_request_parameter(url: str, options: object) -> tuple[tuple[str, ...], str] | None:
    """The first ``s3_additional_kwargs`` parameter in ``options`` (a store's
    ``storage_options``, or a chained s3fs's under its protocol's name) that no operation of
    S3's API takes (botocore's service model: :func:`_s3_request_kinds`), as (its keys in
    ``options``, the parameter it may stand for, else ''); None where there is none. s3fs
    passes each request only the parameters its operation takes and drops the others
    unsent, unsaid: ``ServerSideEncyption: aws:kms`` had written every object with the
    bucket's default encryption, and the run succeeded. Its near names are S3's own, in any
    case (``acl`` for ``ACL``)."""
    import difflib

    if not isinstance(options, dict):
        return None
    for at, given in _s3fs_options(url, options):
        extra = given.get("s3_additional_kwargs")
        if not isinstance(extra, dict):
            continue
        known = _s3_request_kinds()
        for name in extra:
            if isinstance(name, str) and name not in known:
                lower = {k.lower(): k for k in known}
                near = lower.get(name.lower()) or next(
                    iter(difflib.get_close_matches(name, list(known), n=1, cutoff=0.8)), ""
                )
                return (*at, "s3_additional_kwargs", name), near
    return None


def unknown_request_said(near: str) -> str:
    """What a line says of an ``s3_additional_kwargs`` parameter no S3 operation takes
    (:func:`unknown_request_parameter`), after its key: that s3fs drops it, and the fix."""
    fix = f"write {near}, S3's name for it," if near else "correct its name as S3's API writes it"
    return (
        f"is no request parameter of S3's API, and s3fs sends it with no request (dropped "
        f"unsaid): {fix} or remove it"
    )


def _request_kind(
    given: dict[Any, Any], members: Mapping[str, Any]
) -> tuple[tuple[str, ...], str, Any] | None:
    """The first of ``given`` (request parameters, or a structure's members) whose value is
    of no kind its shapes in ``members`` take ({name: the shapes S3's operations give it};
    a name none gives is left alone), as (its keys, the kind its shapes take, the value);
    inside a mapping of one shape, its own members' (a structure's) or values' (a map's:
    ``Metadata: {version: 2}``). A name whose operations give it shapes of several kinds
    (``Tagging``: text or a structure) takes any of them."""
    for name, value in given.items():
        shapes = members.get(name) if isinstance(name, str) else None
        if not shapes or value is None:
            continue
        kinds = [_SHAPE_KINDS.get(shape.type_name, "") for shape in shapes]
        if not any(_fits(kind, value) for kind in kinds):
            return (name,), kinds[0], value
        if len(shapes) != 1 or not isinstance(value, dict):
            continue
        shape = shapes[0]
        if shape.type_name == "structure":
            inner = {n: (m,) for n, m in shape.members.items()}
            found = _request_kind(value, inner)
        elif shape.type_name == "map":
            found = _request_kind(value, {k: (shape.value,) for k in value if isinstance(k, str)})
        else:
            found = None
        if found is not None:
            return (name, *found[0]), found[1], found[2]
    return None


@functools.lru_cache(maxsize=1)
def _s3_request_kinds() -> dict[str, tuple[Any, ...]]:
    """{request parameter: the shapes S3's operations give it, one of each shape's name}, from
    botocore's service model: what :func:`kind_option` checks ``s3_additional_kwargs``' by
    (s3fs passes each parameter to the requests whose operations take it)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("s3")
    shapes: dict[str, dict[str, Any]] = {}
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        for member, inner in shape.members.items() if shape is not None else ():
            shapes.setdefault(member, {}).setdefault(inner.name, inner)
    return {member: tuple(held.values()) for member, held in shapes.items()}


def kind_option_said(name: str, taker: str, kind: str, value: Any) -> str:
    """What a line says of the option ``name`` that ``taker`` takes as ``kind``
    (:data:`KINDS_SAID`), given as ``value`` of another kind (:func:`kind_option`), after
    its key: what it takes, the kind given (:func:`~pipeline.errors.kind_said`, never the
    value), and the fix."""
    from pipeline.errors import kind_said as said

    wanted, written = KINDS_SAID.get(kind, (kind, kind))
    return (
        f"given as {said(value)}, where {taker} takes {wanted}: write {name}: as {written}, or "
        "remove it (its value is not said here)"
    )


def choice_option(
    url: str, options: object
) -> tuple[tuple[Any, ...], str, str, tuple[str, ...]] | None:
    """The first option in ``options`` (a store's ``storage_options``, or a chained s3fs's
    under its protocol's name) that s3fs passes to botocore, given as text that is none of
    the values it takes, as (its keys in ``options``, who takes it, the value, the values
    it takes); None where there is none. They are ``s3_additional_kwargs``' request
    parameters whose shape in S3's service model has an ``enum`` (read from botocore's
    model, :func:`_request_choice`: ``ServerSideEncryption``, ``StorageClass``, ``ACL``,
    ``ChecksumAlgorithm``, ``ObjectLockMode``, ``RequestPayer``, ..., and inside a
    structure, a map or a list, its values': ``ObjectAttributes: [ETag, Sizee]``), which
    botocore sends unchecked: ``ServerSideEncryption: AES257`` was S3's own refusal at the
    output's first write, or with moto's server every object written and the run's exit 0,
    ``ACL: privat`` its HTTP 500, ``StorageClass: STANDARD_AI`` its "storage class you
    specified is not valid", each "cannot write to the output store ...: choose a writable
    output.store"; ``config_kwargs``' options whose values botocore's ``Config`` docstring
    lists (:func:`botocore_config_choices`) where botocore's own check refuses the value
    (:func:`_botocore_refuses`: ``retries: {mode: standrd}``), which had been said only
    where the plan opened the store, as "make no file system (InvalidRetryModeError: ...)",
    naming no line; and its ``signature_version``, which botocore's signer looks up
    (:func:`signature_versions`: ``s3v5`` was its UnknownSignatureVersionError there)."""
    if not isinstance(options, dict):
        return None
    for at, given in _s3fs_options(url, options):
        extra = given.get("s3_additional_kwargs")
        if isinstance(extra, dict):
            chosen = _request_choice(extra, _s3_request_kinds())
            if chosen is not None:
                keys, text, allowed = chosen
                return (*at, "s3_additional_kwargs", *keys), "S3's API", text, allowed
        choices = botocore_config_choices()
        for place, held in _config_places(given.get("config_kwargs"), choices):
            for n, values in sorted(choices[place].items()):
                given_value: Any = held.get(n)
                if not isinstance(given_value, str) or given_value in values:
                    continue
                if _botocore_refuses(place, n, given_value):
                    return (
                        (*at, "config_kwargs", *place, n),
                        "botocore's Config",
                        given_value,
                        values,
                    )
        config = given.get("config_kwargs")
        version = config.get("signature_version") if isinstance(config, dict) else None
        known, said = signature_versions()
        if isinstance(version, str) and version not in known:
            return (*at, "config_kwargs", "signature_version"), "botocore's signer", version, said
    return None


def _request_choice(
    given: Mapping[Any, Any], members: Mapping[str, Any]
) -> tuple[tuple[Any, ...], str, tuple[str, ...]] | None:
    """The first of ``given`` (request parameters, or a structure's members, a map's values)
    given as text that none of its shapes in ``members`` ({name: the shapes S3's operations
    give it}) takes, each shape having an ``enum`` (a name that some operation takes as any
    text is left alone; ``ACL`` takes an object's canned ACLs and a bucket's, together), as
    (its keys, the value, the values its shapes list, in the model's order); inside a
    mapping or list of one shape, its members', values' or items' (an item's key its
    index). A value of another kind is :func:`_request_kind`'s."""
    for name, value in given.items():
        shapes = members.get(name) if isinstance(name, str) else None
        if not shapes or value is None:
            continue
        found = _shape_choice(shapes, value)
        if found is not None:
            return (name, *found[0]), found[1], found[2]
    return None


def _shape_choice(
    shapes: tuple[Any, ...], value: Any
) -> tuple[tuple[Any, ...], str, tuple[str, ...]] | None:
    """Where ``value``, or a value in it, is text that none of ``shapes`` (botocore's
    service model's) takes (:func:`_request_choice`), as (its keys under ``value``, it, the
    values taken); None where there is none."""
    if isinstance(value, str):
        if not all(getattr(shape, "enum", None) for shape in shapes):
            return None
        allowed = tuple(dict.fromkeys(v for shape in shapes for v in shape.enum))
        return None if value in allowed else ((), value, allowed)
    if len(shapes) != 1:
        return None
    shape = shapes[0]
    if shape.type_name == "structure" and isinstance(value, dict):
        return _request_choice(value, {n: (m,) for n, m in shape.members.items()})
    if shape.type_name == "map" and isinstance(value, dict):
        return _request_choice(value, {k: (shape.value,) for k in value if isinstance(k, str)})
    if shape.type_name == "list" and isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _shape_choice((shape.member,), item)
            if found is not None:
                return (i, *found[0]), found[1], found[2]
    return None


def choice_said(name: str, taker: str, value: str, allowed: tuple[str, ...]) -> str:
    """What a line says of the option ``name`` given as ``value``, which ``taker`` does not
    take (:func:`choice_option`), after its key: the value where one of those taken is near
    it in spelling, in any case (``'AES257'``, ``'PRIVATE'``: a misspelling, which no
    credential is; any other is not said, as no value of storage_options is, since it may be
    one), the values taken (S3's as the version of botocore whose model lists them: S3 may
    take a value newer than it, which a newer botocore lists), and the fix, naming that
    nearest value, ``AES256``."""
    import difflib

    import botocore

    lower = {v.lower(): v for v in allowed}
    close = difflib.get_close_matches(value.lower(), list(lower), n=1, cutoff=0.7)
    near = lower[value.lower()] if value.lower() in lower else lower[close[0]] if close else ""
    listed = ", ".join(allowed)
    if taker == "S3's API":
        listed += f", as botocore {botocore.__version__} lists them"
    given = f"{value!r} is" if near else "given as text that is"
    said = f"{given} none of the values {taker} takes for {name} ({listed})"
    if near:
        return f"{said}: write {near}, the nearest, or remove it"
    return f"{said}: write one of them, or remove it (its value is not said here)"


def alias_twice(url: str, options: object) -> tuple[tuple[str, ...], str, str] | None:
    """Where ``options`` (a store's ``storage_options``, or a chained file system's under its
    protocol's name) give s3fs both an option and its alias (:data:`_S3FS_ALIASES`:
    ``key`` and ``username``, ``secret`` and ``password``), neither empty, as (the alias's
    keys in ``options``, the option's name, who takes them); None where none do. s3fs
    refuses the two together with a bare ``KeyError`` ("Supply either key or username, not
    both"), which had come only where the plan opened the store, naming no line."""
    if not isinstance(options, dict):
        return None
    for cls, at, given in _file_systems(url, options):
        if cls.__module__.split(".")[0] != "s3fs":
            continue
        for alias, name in _S3FS_ALIASES.items():
            if given.get(alias) and given.get(name):
                return (*at, alias), name, _library(cls)
    return None


def alias_said(name: str, taker: str) -> str:
    """What a line says of an alias given beside the option ``name`` it stands for
    (:func:`alias_twice`), after its key: the fix, never a value."""
    return (
        f"given beside {name}, which it is another name for: {taker} takes one of the two, "
        "so keep one (their values are not said here)"
    )


#: How an option taken as text that names several things is written, where a list of them
#: is refused (:func:`text_said`): botocore's ``sigv4a_signing_region_set``, its regions
#: separated by commas (as botocore joins an endpoint rule's list itself), ``*`` for all.
_TEXT_FORMS = {"sigv4a_signing_region_set": "'us-east-1,us-west-2' (the regions, or '*')"}

#: Who takes botocore ``Config``'s ``proxies``, as a line says it.
PROXIES_TAKER = "botocore's Config (its proxies)"
#: How an option is written that its taker takes as text, by the taker (:func:`text_said`):
#: a proxy's URL (``proxies: {http: 8080}``, a port alone, had reached botocore's HTTP layer,
#: each request failing as "HTTPClientError: ... 'int' object has no attribute
#: 'startswith'" after its retries).
_TAKER_FORMS = {PROXIES_TAKER: "'http://HOST:PORT', the proxy's URL"}


def text_said(name: str, taker: str, value: Any) -> str:
    """What a line says of the option ``name`` that ``taker`` takes as text, given as
    ``value`` of another kind (:func:`text_option`), after its key: what it takes, the kind
    given (:func:`~pipeline.errors.kind_said`, never the value), and the fix (as
    :data:`_TEXT_FORMS` writes it, for an option that names several things)."""
    from pipeline.errors import kind_said

    form = _TEXT_FORMS.get(name) or _TAKER_FORMS.get(taker, "'...'")
    return (
        f"given as {kind_said(value)}, where {taker} takes text: write it as text "
        f"({name}: {form}, quoted where YAML would read it as another kind), or remove it "
        "(its value is not said here)"
    )


#: Options of a store's file system that are no file system's options of a chained layer.
_NOT_LAYERS = frozenset(
    {"client_kwargs", "config_kwargs", "headers", "params", "s3_additional_kwargs"}
)


def _endpoint_layers(options: dict) -> list[tuple[tuple[str, ...], dict]]:
    """The mappings of ``options`` that may give a file system an ``endpoint_url``: the
    options themselves, and those of each file system a chained URL names under its
    protocol (``zip::s3://...`` with ``{s3: {endpoint_url: ...}}``), as (their keys, them)."""
    layers: list[tuple[tuple[str, ...], dict]] = [((), options)]
    for name, held in options.items():
        if isinstance(name, str) and name not in _NOT_LAYERS and isinstance(held, dict):
            layers.append(((name,), held))
    return layers


def endpoint_with_userinfo(options: object) -> tuple[tuple[str, ...], str] | None:
    """Where ``options`` (a store's ``storage_options``: their own ``endpoint_url``, their
    ``client_kwargs``', and those of a chained URL's file systems under their protocols'
    names) give an ``endpoint_url`` with a user or password in it (``http://user:pw@host``,
    which botocore refused with its own words, after a request), as (its keys, the
    endpoint); None where none does. Every one is looked at, not only the one a client would
    use: a chained layer's (``s3: {endpoint_url: ...}``) had reached botocore unchecked."""
    from urllib.parse import urlsplit

    if not isinstance(options, dict):
        return None
    for layer, opts in _endpoint_layers(options):
        for at, held in (((), opts), (("client_kwargs",), opts.get("client_kwargs"))):
            endpoint = held.get("endpoint_url") if isinstance(held, dict) else None
            if not isinstance(endpoint, str):
                continue
            try:
                userinfo = urlsplit(endpoint).username is not None
            except ValueError:
                continue
            if userinfo:
                return (*layer, *at, "endpoint_url"), endpoint
    return None


def endpoint_twice(options: object) -> tuple[str, ...] | None:
    """The keys of a second ``endpoint_url`` where one file system's options give two, their
    own and their ``client_kwargs``' (s3fs passes both to botocore's client, which raised
    ``TypeError: got multiple values for keyword argument 'endpoint_url'`` at the first
    request); None where none does."""
    if not isinstance(options, dict):
        return None
    for layer, opts in _endpoint_layers(options):
        inner = opts.get("client_kwargs")
        if "endpoint_url" in opts and isinstance(inner, dict) and "endpoint_url" in inner:
            return (*layer, "client_kwargs", "endpoint_url")
    return None


ENDPOINT_TWICE = (
    "an endpoint_url is given here and another beside client_kwargs: the client takes one "
    "(both reach it, and it refuses them): keep one of the two"
)


def endpoint_userinfo_said(endpoint: str, named: str) -> str:
    """What a line says of an ``endpoint_url`` with credentials in it
    (:func:`endpoint_with_userinfo`), after its key: the endpoint with its password hidden,
    and the fix (``named``: the store's storage_options, as the line names them)."""
    from pipeline.errors import public_url

    return (
        f"{public_url(endpoint)} has credentials in it: give the endpoint as "
        f"scheme://host:port, and the credentials as {named} key and secret"
    )


class OptionProblem(NamedTuple):
    """A store option's problem (:func:`storage_option_problem`): its keys in the store's
    ``storage_options``, what its line says after them (why and the fix, never a value of a
    credential), and, where the value is text and its taker takes another kind, that kind
    in words and what the line says before its fix, its last mark included
    (``model_validate_strings``, whose every value is text, names another call there:
    ``problems.strings_fix``)."""

    keys: tuple[Any, ...]
    said: str
    wanted: str = ""
    as_text: str = ""


def storage_option_problem(url: str, options: object, named: str) -> OptionProblem | None:
    """The first of ``options`` (the ``storage_options`` of the store at ``url``, said as
    ``named``: ``output.storage_options``) that its file system, or the client it passes
    them to, would refuse or misread, without sending anything; None where there is none.
    In order: an ``endpoint_url`` with credentials in it (:func:`endpoint_with_userinfo`),
    two endpoints (:func:`endpoint_twice`), an option taken as a mapping given as another
    kind (:func:`mapping_option`), one taken as text given as another kind
    (:func:`text_option`), an ``s3_additional_kwargs`` parameter no S3 operation takes
    (:func:`unknown_request_parameter`), an option s3fs passes to botocore given as another
    kind than it takes (:func:`kind_option`), or as text none of the values it takes
    (:func:`choice_option`), s3fs's ``key`` and its alias together (:func:`alias_twice`),
    ``asynchronous: true`` (:func:`async_option`), an option taken as true or false given as
    text (:func:`text_bool_option`). The one check of both a config's stores, at the
    option's line (:func:`~pipeline.config.problems.checked`), and a ``Location``'s where
    it is opened (:func:`~pipeline.store.location.storage_option_error`: one made through
    the Python API, from no config, had been checked only for some of them there). The
    libraries asked are those the URL's protocols name."""
    if isinstance(options, dict) and not options:
        # none given, none to refuse: every check below looks at the options given (the
        # first asks the file system classes' signatures: 6-9 ms in a run's plan phase)
        return None
    endpoint = endpoint_with_userinfo(options)
    if endpoint is not None:
        keys, url_said = endpoint
        layer = keys[:1] if keys[0] not in ("endpoint_url", "client_kwargs") else ()
        return OptionProblem(keys, endpoint_userinfo_said(url_said, ".".join((named, *layer))))
    twice = endpoint_twice(options)
    if twice is not None:
        return OptionProblem(twice, ENDPOINT_TWICE)
    mapped = mapping_option(url, options)
    if mapped is not None:
        keys, taker, value = mapped
        return OptionProblem(keys, mapping_said(keys[-1], taker, value))
    texted = text_option(url, options)
    if texted is not None:
        keys, taker, value = texted
        return OptionProblem(keys, text_said(keys[-1], taker, value))
    unknown = unknown_request_parameter(url, options)
    if unknown is not None:
        keys, near = unknown
        return OptionProblem(keys, unknown_request_said(near))
    kinded = kind_option(url, options)
    if kinded is not None:
        keys, taker, kind, value = kinded
        said = kind_option_said(keys[-1], taker, kind, value)
        if not isinstance(value, str):
            return OptionProblem(keys, said)
        wanted = KINDS_SAID[kind][0]
        return OptionProblem(keys, said, wanted, f"given as text, where {taker} takes {wanted}:")
    chosen = choice_option(url, options)
    if chosen is not None:
        keys, taker, value, allowed = chosen
        name = keys[-1] if isinstance(keys[-1], str) else f"an item of {keys[-2]}"
        return OptionProblem(keys, choice_said(name, taker, value, allowed))
    aliased = alias_twice(url, options)
    if aliased is not None:
        keys, name, taker = aliased
        return OptionProblem(keys, alias_said(name, taker))
    made = async_option(url, options)
    if made is not None:
        keys, name = made
        return OptionProblem(keys, async_said(name))
    found = text_bool_option(url, options)
    if found is None:
        return None
    keys, taker = found
    return OptionProblem(
        keys,
        text_bool_said(keys[-1], taker),
        "true or false",
        f"given as text, where {taker} takes true or false (to it any text, 'false' too, is "
        "true, or no value): it takes a boolean,",
    )

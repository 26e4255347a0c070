"""The one exception type users see: a one-line message that names the problem and the fix."""


class PipelineError(Exception):
    """A problem with the user's input, config or environment.

    The command line prints ``str(error)`` as one line (no traceback unless ``--debug``) and
    exits non-zero. Raise it before any data is written wherever the problem can be known then.
    """


def disk_full(e: OSError, where: str) -> PipelineError | None:
    """The one-line error for a full disk (or quota) while writing ``where``; None otherwise."""
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return PipelineError(
            f"no space left writing {where} ({e.strerror}): free space, then `run --resume` "
            "finishes the output"
        )
    return None

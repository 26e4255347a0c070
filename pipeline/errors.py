"""The one exception type users see: a one-line message that names the problem and the fix."""


class PipelineError(Exception):
    """A problem with the user's input, config or environment.

    The command line prints ``str(error)`` as one line (no traceback unless ``--debug``) and
    exits non-zero. Raise it before any data is written wherever the problem can be known then.
    """

"""``python -m pipeline``: the command line (:func:`pipeline.cli.main`)."""

import sys

try:
    from pipeline.cli import main
except KeyboardInterrupt:  # a Ctrl-C while the command's modules load: nothing begun yet
    import os
    import signal

    # its one line, not Python's traceback of the import it cut short, and the death by
    # SIGINT that the command's own interrupt ends in (a script running it stops too: h86g)
    sys.stderr.write("interrupted: nothing was written\n")
    sys.stderr.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())

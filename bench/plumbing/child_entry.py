"""The entry of a child process that dies with its run (``children.child_command``):

    python -m bench.plumbing.child_entry MODULE ARGS...

sets the death signal (``children.die_with_parent``) before anything heavy is imported, then runs
``MODULE.main(ARGS)``. A worker's own module imports torch (seconds on a loaded machine); a run
killed in those seconds would otherwise leave the worker alive until its imports end."""

from __future__ import annotations

import importlib
import sys

from bench.plumbing.children import die_with_parent


def main(argv: list[str]) -> int:
    die_with_parent()
    return importlib.import_module(argv[0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python -m gridpulse.bench faust-bare ...``: the child process of the ``faust-bare`` phase."""

from __future__ import annotations

import sys

from gridpulse.bench.bare_faust import faust_bare_main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["faust-bare"]:
        faust_bare_main(argv[1:])
        return 0
    print("usage: python -m gridpulse.bench faust-bare --broker ... (or: gridpulse bench)")
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""``report-consumer``'s entry point: says which extra to install when the consumer's stack is missing.

`pip install perf-reports` installs only what the hooks need; the consumer comes with
`perf-reports[consumer]`. Without it, the command says so in one line instead of a traceback.
"""

from __future__ import annotations

import sys

# The consumer's own dependencies (the `consumer` extra), by import name.
CONSUMER_STACK = frozenset({"elasticsearch", "elastic_transport", "opensearchpy", "aiohttp", "tenacity", "yaml",
                            "numpy"})


def main() -> int:
    try:
        from consumer.cli import main as run
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in CONSUMER_STACK:
            raise
        print(f"report-consumer: {err.name} is not installed; the consumer needs "
              "`pip install 'perf-reports[consumer]'`", file=sys.stderr)
        return 2
    return run()


if __name__ == "__main__":
    sys.exit(main())

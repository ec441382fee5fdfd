#!/usr/bin/env python3
"""Counts calls in a callgrind output file, by callee name (stdlib only).

usage: callgrind_calls.py FILE REGEX...   → one line per REGEX: total calls to functions whose
(demangled) name matches it, and the names matched. Used by bench/run to check the hot-path goal
"at most one shared-data get per request" from the calls into the host's SharedData::get.
"""

import re
import sys
from collections import defaultdict


def calls_by_callee(path):
    names = {}
    calls = defaultdict(int)
    callee = None
    ref = re.compile(r"^c?fn=\((\d+)\)(?: (.*))?$")
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("fn=") or line.startswith("cfn="):
                m = ref.match(line)
                if m:
                    fid, name = m.group(1), m.group(2)
                    if name is not None:
                        names[fid] = name
                    name = names.get(fid, fid)
                else:  # uncompressed names
                    name = line.split("=", 1)[1]
                if line.startswith("cfn="):
                    callee = name
            elif line.startswith("calls=") and callee is not None:
                calls[callee] += int(line[6:].split()[0])
    return calls


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    calls = calls_by_callee(sys.argv[1])
    for pattern in sys.argv[2:]:
        rx = re.compile(pattern)
        hits = {n: c for n, c in calls.items() if rx.search(n)}
        print(f"{sum(hits.values())}\t{pattern}\t{'; '.join(sorted(hits))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

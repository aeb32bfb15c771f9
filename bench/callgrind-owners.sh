#!/usr/bin/env bash
# Code lines (I1 misses) and instructions per answer, by owner and by
# function, from the windows bench/server-callgrind.sh leaves in OUT
# (CACHESIM=1): OUT/name.cg, and OUT/name.wrk for the answers. Exclusive
# counts of each function (its own code, not its callees'), summed over
# its copies ('2 recursions) and divided by the answers. A window's
# whole-process figures move with its answers (the idle and background
# work is spread over fewer answers on a busy machine); a function's own
# count per answer does not, so two builds compare function by function.
# Owners: Sluice's packages (internal/NAME), otter, prometheus, and
# "other" (net/http, the runtime and the rest of the standard library).
# Usage: bench/callgrind-owners.sh OUT/a.cg [OUT/b.cg]
#   one file: the owners, then the functions of Sluice and its libraries
#   two files: the owners of both, then the functions whose I1 per answer
#   differs by more than MIN (default 0.9) between a and b
set -euo pipefail
MIN=${MIN:-0.9}
answers() { awk '/requests in/ {print $1}' "${1%.cg}.wrk"; }
# per function: I1 per answer, instructions per answer, name (spaces as _;
# Sluice's internal/NAME as sluice/NAME)
functions() {
  callgrind_annotate --show=Ir,I1mr --threshold=100 --auto=no --inclusive=no "$1" 2>/dev/null |
    awk -v n="$(answers "$1")" '
      /^ *[0-9,]+ \( *[0-9.]+%\) +[0-9,]+ \( *[0-9.]+%\) / {
        ir = $1; gsub(/,/, "", ir); i1 = $4; gsub(/,/, "", i1)
        f = $0; sub(/ \[.*$/, "", f); sub(/^.*\.(go|s):/, "", f); sub(/^.*:/, "", f); sub(/'"'"'[0-9]+$/, "", f)
        sub(/github.com\/sluice-gw\/sluice\/internal\//, "sluice/", f); gsub(/ /, "_", f)
        i[f] += i1; r[f] += ir
      }
      END { for (f in i) printf "%.1f %.0f %s\n", i[f] / n, r[f] / n, f }'
}
owners() {
  functions "$1" | awk '{ f = $3; o = "other"
      if (f ~ /maypok86\/otter/) o = "otter"; else if (f ~ /prometheus/) o = "prometheus"
      else if (f ~ /^sluice\//) { o = substr(f, 8); sub(/[.(].*/, "", o) }
      i[o] += $1; r[o] += $2 }
    END { for (o in i) printf "%-12s %7.1f %7.0f\n", o, i[o], r[o] }' | sort -k2 -rn
}
if [ $# = 1 ]; then
  echo "owner        I1/answer instr/answer ($(answers "$1") answers)"
  owners "$1"
  echo; echo "I1/answer instr/answer function (Sluice and its libraries)"
  functions "$1" | grep -E ' (sluice/|.*otter|.*prometheus)' | sort -rn
  exit 0
fi
echo "owner        I1 a    instr a | b ($(answers "$1") | $(answers "$2") answers)"
join -a1 -a2 -e 0 -o 0,1.2,1.3,2.2,2.3 <(owners "$1" | sort) <(owners "$2" | sort) |
  awk '{ printf "%-12s %6.1f %7.0f | %6.1f %7.0f\n", $1, $2, $3, $4, $5 }' | sort -k2 -rn
echo; echo "  I1 a   I1 b   b-a  instr a  instr b  function (|b-a| > $MIN I1 per answer)"
join -1 3 -2 3 -a1 -a2 -e 0 -o 0,1.1,2.1,1.2,2.2 <(functions "$1" | sort -k3) <(functions "$2" | sort -k3) |
  awk -v m="$MIN" '{ d = $3 - $2; if (d > m || d < -m) printf "%6.1f %6.1f %+5.1f %8.0f %8.0f  %s\n", $2, $3, d, $4, $5, substr($1, 1, 100) }' | sort -k3 -n

#!/usr/bin/env bash
# Adds up build/fuzz/history.txt (one line per long run of fuzz/run.sh) into a
# markdown table: per target, runs, seconds, executions, the highest cov/ft,
# and crashes.
set -u
cd "$(dirname "$0")/.."
hist=${1:-build/fuzz/history.txt}
echo "| target | runs | seconds | executions | cov (edges) | ft (features) | crashes |"
echo "|---|---:|---:|---:|---:|---:|---:|"
awk '{
  t=$2; s=$3; sub("s","",s);
  for (i=1;i<=NF;i++) {
    if ($i=="execs") e=$(i+1); if ($i=="cov:") c=$(i+1); if ($i=="ft:") f=$(i+1); if ($i=="crashes") k=$(i+1);
  }
  runs[t]++; secs[t]+=s; if (e ~ /^[0-9]+$/) ex[t]+=e; if (c+0>cov[t]) cov[t]=c+0; if (f+0>ft[t]) ft[t]=f+0; cr[t]+=k;
} END { for (t in runs) printf "| %s | %d | %d | %d | %d | %d | %d |\n", t, runs[t], secs[t], ex[t], cov[t], ft[t], cr[t] }' "$hist" | sort

#!/bin/bash
# Submit a batch-norm study: a job array that trains its runs, and the merge as a job that starts
# once every task succeeded. Run it from a shell with the course's environment active:
#
#   bash jobs/submit_study.sh [STUDY [gpu|cpu]]      # e.g. bash jobs/submit_study.sh extended
#
# Logs: logs/<job name>_<array id>_<task>.out. The settings below, and jobs/study.sh's, can be
# given in the environment, e.g. TIME=02:00:00 TASKS=10 bash jobs/submit_study.sh extended.
set -euo pipefail
cd "$(dirname "$0")/.."
STUDY=${1:-${STUDY:-default}}
KIND=${2:-gpu}
case "$KIND" in
    gpu | cpu) ;;
    *) echo "the second argument is gpu or cpu, not '$KIND'" >&2 && exit 2 ;;
esac
source jobs/study.sh

PARTITION=${PARTITION-}   # empty: the job file's (gpu_a100, rome)
TIME=${TIME-}             # wall time of one task; empty: the job file's (01:00:00)
CPUS=${CPUS-}             # CPUs per task; empty: the job file's
TASKS=${TASKS:-}          # array tasks; empty: one per run
MAX_RUNNING=${MAX_RUNNING:-2}
LOGS=${LOGS:-logs}
WAIT=${WAIT:-}            # non-empty: return only once the merge has ended, with its exit code

# shellcheck disable=SC2086  # EXTRA_ARGS is several options
RUNS=$("$PYTHON" compare_batch_norm.py --study "$STUDY" --list $EXTRA_ARGS | wc -l)
TASKS=${TASKS:-$RUNS}
if [ "$RUNS" -eq 0 ] || [ "$TASKS" -lt 1 ]; then
    echo "study $STUDY lists $RUNS runs: nothing to submit for $TASKS tasks" >&2
    exit 2
fi
mkdir -p "$LOGS"
export STUDY RESULTS DATA EXTRA_ARGS MODULES CONDA_ENV PYTHON
options=(--parsable ${PARTITION:+--partition="$PARTITION"} ${CPUS:+--cpus-per-task="$CPUS"})
ARRAY_JOB_ID=$(sbatch "${options[@]}" ${TIME:+--time="$TIME"} --array="0-$((TASKS - 1))%$MAX_RUNNING" \
    --output="$LOGS/%x_%A_%a.out" "jobs/study_$KIND.sbatch")
ARRAY_JOB_ID=${ARRAY_JOB_ID%%;*} # --parsable prints "id;cluster" on federated clusters
echo "study $STUDY: $RUNS runs in $TASKS tasks, array job $ARRAY_JOB_ID"
MERGE_JOB_ID=$(sbatch "${options[@]}" ${WAIT:+--wait} --dependency="afterok:$ARRAY_JOB_ID" \
    --output="$LOGS/%x_%j.out" jobs/merge.sbatch)
echo "merge: job ${MERGE_JOB_ID%%;*}, after the array's tasks all succeed"

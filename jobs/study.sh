# The settings and steps every job of a study shares; the job files and submit_study.sh source it.
# Each setting can be given in the environment instead (sbatch passes the submitting shell's
# environment on to the job), which is how submit_study.sh and the tests hand them down.

MODULES=${MODULES-"2023 Anaconda3/2023.07-2"} # the course's software stack on Snellius; empty: load none
CONDA_ENV=${CONDA_ENV-dl2023}                 # the course's conda environment; empty: activate none
PYTHON=${PYTHON:-python}
STUDY=${STUDY:-default}                       # default, extended, batch_size, init_scale
RESULTS=${RESULTS:-}                          # empty: the study's own results file
DATA=${DATA:-${CIFAR10_DATA_DIR:-data}}       # the folder holding cifar-10-batches-py/
EXTRA_ARGS=${EXTRA_ARGS:-}                    # more options of the study, e.g. "--seeds 42 43 44"

load_environment() {
    if [ -n "$MODULES" ]; then
        module purge
        # shellcheck disable=SC2086  # one module a word
        module load $MODULES
    fi
    if [ -n "$CONDA_ENV" ]; then
        source activate "$CONDA_ENV"
    fi
    # One BLAS/OpenMP thread per CPU SLURM gave the task, unless the submitting shell chose a number:
    # the same count gives the same float32 bits, so a study run in one process can be compared.
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
}

# Train this array task's share of the study: runs K, K+N, ... for task K of N, each into a file of
# its own beside the results file, so the tasks share no file and a rerun skips finished runs.
train_share() {
    local device=$1
    if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
        echo "not an array task: submit with sbatch --array=0-N (see jobs/submit_study.sh)" >&2
        exit 2
    fi
    if [ ! -d "$DATA/cifar-10-batches-py" ]; then
        echo "no $DATA/cifar-10-batches-py: download it on the login node first:" \
            "python -c \"import cifar10_utils; cifar10_utils.get_cifar10('data')\"" >&2
        exit 2
    fi
    load_environment
    # Read the images from the node's own disk, not from the shared file system.
    SCRATCH="${TMPDIR:-/tmp}/cifar10_${SLURM_JOB_ID}"
    mkdir -p "$SCRATCH"
    trap 'rm -rf "$SCRATCH"' EXIT
    cp -r "$DATA/cifar-10-batches-py" "$SCRATCH/"
    echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT on $(hostname), $OMP_NUM_THREADS threads"
    # shellcheck disable=SC2086  # EXTRA_ARGS is several options
    "$PYTHON" -u compare_batch_norm.py --study "$STUDY" \
        --task "$SLURM_ARRAY_TASK_ID" --tasks "$SLURM_ARRAY_TASK_COUNT" \
        ${RESULTS:+--results "$RESULTS"} --data_dir "$SCRATCH" --device "$device" --no_progress $EXTRA_ARGS
}

# Gather every run's file into the results file, and draw the figures beside it.
merge_results() {
    load_environment
    # shellcheck disable=SC2086
    "$PYTHON" -u compare_batch_norm.py --study "$STUDY" --merge ${RESULTS:+--results "$RESULTS"} $EXTRA_ARGS
}

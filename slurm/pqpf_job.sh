# Sourced by the pqpf sbatch scripts (not run on its own): environment set-up, logging,
# and running one stage. Reads:
#   PQPF_HOME      the pqpf code directory (set by the calling script)
#   PQPF_ACTIVATE  optional shell command that activates the environment, eval'ed
#   PQPF_PYTHON    python to run (default python3)
#   PQPF_CONFIG    site configuration passed to the stage as --config (optional)
#   PQPF_DRY_RUN   1: print the stage's command instead of running it

pqpf_log() {  # pqpf_log MESSAGE...: one time-stamped line on stdout (the job log)
  printf '[%s %s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${SLURM_JOB_NAME:-pqpf}" "$*"
}

pqpf_die() {  # pqpf_die MESSAGE...: log the error on stderr and exit 2
  pqpf_log "error: $*" >&2
  exit 2
}

pqpf_setup() {  # activate the environment, cd to PQPF_HOME, log where and what we are
  PQPF_PYTHON=${PQPF_PYTHON:-python3}
  if [ -n "${PQPF_ACTIVATE:-}" ]; then
    pqpf_log "activating: $PQPF_ACTIVATE"
    set +u  # activation scripts (conda's in particular) read unset variables
    eval "$PQPF_ACTIVATE" || pqpf_die "PQPF_ACTIVATE failed: $PQPF_ACTIVATE"
    set -u
  fi
  cd "$PQPF_HOME" || pqpf_die "cannot cd to PQPF_HOME=$PQPF_HOME"
  command -v "$PQPF_PYTHON" >/dev/null || pqpf_die "PQPF_PYTHON=$PQPF_PYTHON not found"
  local job=${SLURM_JOB_ID:-none}
  if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then job="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"; fi
  pqpf_log "host $(uname -n) job $job cpus ${SLURM_CPUS_PER_TASK:-?} dir $PWD" \
    "python $(command -v "$PQPF_PYTHON")"
}

pqpf_run() {  # pqpf_run CMD...: log and run the stage, exit with its status
  local quoted status=0
  quoted=$(printf '%q ' "$@")
  if [ "${PQPF_DRY_RUN:-0}" = 1 ]; then
    echo "dry run: ${quoted% }"
    exit 0
  fi
  pqpf_log "running: ${quoted% }"
  "$@" || status=$?
  pqpf_log "finished with exit status $status"
  exit "$status"
}

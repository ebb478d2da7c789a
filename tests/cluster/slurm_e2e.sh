#!/usr/bin/env bash
# End-to-end check of the SLURM profile (profiles/slurm) on a throw-away
# single-node SLURM cluster (issue #9).
#
#   bash tests/cluster/slurm_e2e.sh        # as root, Debian/Ubuntu
#   ISMCGM_SLURM=1 pytest tests/cluster    # the same, from pytest
#
# 1. installs slurm-wlm + munge with apt-get if they are missing, then starts a
#    private munged, slurmctld and slurmd for this machine; every file (keys,
#    sockets, config, state, spool, logs) lives in one temporary directory and
#    the daemons find their config through SLURM_CONF, so no system
#    configuration is read or written;
# 2. creates a virtual environment with `pip install -e '.[test,slurm]'`
#    (or uses $VENV, which must already have snakemake and the SLURM plugin);
# 3. runs the test config (tests/config/test.yaml) twice, each in its own fresh
#    working directory generating its own mock: once through the cluster
#    profile as committed (`--profile profiles/slurm`; every non-local job is
#    an sbatch job, five galaxies' jobs per group job, the aggregates one) plus the two options
#    this accounting-less cluster needs (`--slurm-status-command squeue`, and
#    a 10 s first status check instead of 40 s), and once locally
#    (`--cores 2`);
# 4. compares every file both runs wrote under results/ (tables, validation,
#    mock FITS, Monte Carlo parquet files, figures; not results/logs, whose
#    lines carry timestamps) with cmp: the two sets of files must be the same
#    and every file byte-identical (SOURCE_DATE_EPOCH fixes the PDF dates);
# 5. stops the daemons and removes the temporary directory on exit (keep it
#    with ISMCGM_SLURM_KEEP=1).  Exit status 0 only if everything passed.
#
# Environment: VENV (existing virtual environment to use), ISMCGM_SLURM_KEEP=1
# (keep the temporary directory), SLURM_E2E_CORES (cores of the local run, 2).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TEST_CONFIG="$REPO/tests/config/test.yaml"
PROFILE="$REPO/profiles/slurm"
LOCAL_CORES=${SLURM_E2E_CORES:-2}

log() { printf '[slurm-e2e %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts munged/slurmctld/slurmd)"
if [ ! -f "$TEST_CONFIG" ] || [ ! -f "$PROFILE/config.yaml" ]; then die "not an ismcgm checkout: $REPO"; fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ismcgm-slurm-e2e.XXXXXX")
chmod 755 "$WORK"
ETC="$WORK/etc" MUNGE="$WORK/munge"
mkdir -p "$ETC" "$MUNGE" "$WORK/state" "$WORK/spool" "$WORK/log" "$WORK/bin"
chmod 711 "$MUNGE"
export SLURM_CONF="$ETC/slurm.conf"

# ------------------------------------------------------------ clean-up
started=()   # pid files of the daemons this script started, in start order
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ -f "$SLURM_CONF" ] && [ -f "$WORK/slurmctld.pid" ]; then
    scancel --quiet --user="$(id -un)" 2>/dev/null   # only this private cluster (SLURM_CONF)
    sleep 1
  fi
  local i pidfile pid
  [ ${#started[@]} -gt 0 ] && log "stopping the daemons"
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do   # slurmd, slurmctld, munged
    pidfile=${started[i]}
    pid=$(cat "$pidfile" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { log "pid $pid ($pidfile) did not stop, sending KILL"; kill -9 "$pid"; }
  done
  if [ "$rc" -ne 0 ]; then
    for f in "$WORK"/log/slurmctld.log "$WORK"/log/slurmd.log; do
      [ -s "$f" ] && { echo "--- last lines of $f" >&2; tail -n 15 "$f" >&2; }
    done
  fi
  if [ "${ISMCGM_SLURM_KEEP:-0}" = 1 ]; then
    log "kept $WORK"
  else
    log "removing $WORK"
    rm -rf "$WORK"
  fi
  if [ "$rc" -eq 0 ]; then log "PASS"; else log "FAILED (exit $rc)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ 1. SLURM
need=()
command -v munged >/dev/null || need+=(munge)
for c in slurmctld slurmd sbatch; do command -v "$c" >/dev/null || { need+=(slurm-wlm); break; }; done
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
  log "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || die "apt-get install ${need[*]} failed"
fi

free_port() {  # first port >= $1 nobody listens on
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

log "starting munged"
dd if=/dev/urandom of="$MUNGE/munge.key" bs=1024 count=1 status=none
chmod 600 "$MUNGE/munge.key"
munged --force --key-file="$MUNGE/munge.key" --socket="$MUNGE/munge.sock" \
  --pid-file="$MUNGE/munged.pid" --log-file="$MUNGE/munged.log" --seed-file="$MUNGE/munged.seed" \
  || die "munged did not start: $(tail -n 3 "$MUNGE/munged.log" 2>/dev/null)"
started+=("$MUNGE/munged.pid")
munge -S "$MUNGE/munge.sock" -n | unmunge -S "$MUNGE/munge.sock" >/dev/null || die "munge round trip failed"

HOST=$(hostname -s)
NODE_LINE=$(slurmd -C | head -n 1)   # NodeName=<host> CPUs=... RealMemory=...
[[ $NODE_LINE == NodeName=* ]] || die "unexpected 'slurmd -C' output: $NODE_LINE"
NCPU=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")
REALMEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")
CTLD_PORT=$(free_port 6817)
SLURMD_PORT=$(free_port $((CTLD_PORT + 1)))

# Partition: the one the committed profile asks for (default-resources:
# slurm_partition), so the profile is used exactly as committed.
PARTITION=$(sed -n 's/^[[:space:]]*slurm_partition:[[:space:]]*["'\'']\{0,1\}\([A-Za-z0-9_.-]*\).*/\1/p' \
  "$PROFILE/config.yaml" | head -n 1)
PARTITION=${PARTITION:-normal}

cat >"$SLURM_CONF" <<EOF
# Written by tests/cluster/slurm_e2e.sh: throw-away single-node cluster.
ClusterName=ismcgm-e2e
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE/munge.sock
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MpiDefault=none
SwitchType=switch/none
# no accounting (no slurmdbd): sacct does not work, so the run uses
# --slurm-status-command squeue, and finished jobs must stay visible to
# squeue long enough (MinJobAge)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
ReturnToService=2
SlurmctldTimeout=60
SlurmdTimeout=60
InactiveLimit=0
$NODE_LINE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

log "starting slurmctld and slurmd ($HOST: $NCPU CPUs, ${REALMEM} MB; partition $PARTITION; ports $CTLD_PORT/$SLURMD_PORT)"
slurmctld || die "slurmctld did not start"
started+=("$WORK/slurmctld.pid")
slurmd || die "slurmd did not start"
started+=("$WORK/slurmd.pid")

state=""
for _ in $(seq 60); do
  state=$(sinfo --noheader --nodes="$HOST" --format=%t 2>/dev/null | head -n 1)
  [ "$state" = idle ] && break
  sleep 1
done
[ "$state" = idle ] || die "node $HOST not idle after 60 s (state '${state:-none}')"
log "node $HOST idle"

# snakemake-executor-plugin-slurm-jobstep removes every SLURM_* variable but
# a few job ids from the environment of the srun it runs inside each job, so
# SLURM_CONF is lost there and srun would look for /etc/slurm/slurm.conf.  A
# cluster with its config in the standard place does not notice; here an srun
# wrapper first on PATH (sbatch exports PATH) points srun back to this config.
cat >"$WORK/bin/srun" <<EOF
#!/bin/sh
export SLURM_CONF="\${SLURM_CONF:-$SLURM_CONF}"
exec $(command -v srun) "\$@"
EOF
chmod +x "$WORK/bin/srun"
export PATH="$WORK/bin:$PATH"
timeout 120 srun --ntasks=1 --mem=100 --time=2 true || die "a test 'srun true' on the new cluster failed"

# ------------------------------------------------------------ 2. venv
if [ -n "${VENV:-}" ]; then
  log "using VENV=$VENV"
else
  VENV="$WORK/venv"
  log "creating $VENV with pip install -e '.[test,slurm]'"
  python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv?)"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1
  "$VENV/bin/python" -m pip install -q -e "${REPO}[test,slurm]" >"$WORK/log/pip.log" 2>&1 \
    || { tail -n 20 "$WORK/log/pip.log" >&2; die "pip install -e '.[test,slurm]' failed"; }
fi
PY="$VENV/bin/python"
"$PY" -c 'import snakemake, snakemake_executor_plugin_slurm' 2>/dev/null \
  || die "$VENV lacks snakemake or snakemake-executor-plugin-slurm (pip install -e '.[test,slurm]')"
# Both runs import this checkout's package, whatever the venv's install points to.
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
log "$("$PY" -m snakemake --version | sed 's/^/snakemake /'), plugin $("$PY" -c \
  'from importlib.metadata import version as v; print(v("snakemake-executor-plugin-slurm"), "/ jobstep", v("snakemake-executor-plugin-slurm-jobstep"))')"

# The largest mem_mb the profile asks for must fit the node, or that job
# would never start.
maxmem=$("$PY" - "$PROFILE/config.yaml" <<'EOF'
import sys, yaml
p = yaml.safe_load(open(sys.argv[1]))
mems = [p.get("default-resources", {}).get("mem_mb", 0)]
mems += [r.get("mem_mb", 0) for r in (p.get("set-resources") or {}).values()]
print(max(int(m) for m in mems))
EOF
)
[ "$maxmem" -le "$REALMEM" ] || die "profile asks for mem_mb=$maxmem but this node has $REALMEM MB"

# ------------------------------------------------------------ 3. the two runs
smk() {  # smk <workdir> <logfile> <snakemake args...>; returns snakemake's status
  local wd=$1 out=$2
  shift 2
  (cd "$REPO" && "$PY" -m snakemake -s "$REPO/Snakefile" --directory "$wd" "$@" \
    --configfile "$TEST_CONFIG") >"$out" 2>&1
}

# Matplotlib stamps PDFs with the creation date unless SOURCE_DATE_EPOCH is
# set; fix it so the figures can be compared too (sbatch exports it to jobs).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
RUN_SLURM="$WORK/run-slurm" RUN_LOCAL="$WORK/run-local"
mkdir -p "$RUN_SLURM" "$RUN_LOCAL"

log "SLURM run: snakemake --profile profiles/slurm --slurm-status-command squeue ... -> $RUN_SLURM"
t0=$SECONDS
smk "$RUN_SLURM" "$WORK/log/snakemake-slurm.log" --profile "$PROFILE" \
  --slurm-status-command squeue --slurm-init-seconds-before-status-checks 10 \
  || { tail -n 40 "$WORK/log/snakemake-slurm.log" >&2; die "SLURM run failed (log above)"; }
t_slurm=$((SECONDS - t0))
n_sbatch=$(grep -c "has been submitted with SLURM jobid" "$WORK/log/snakemake-slurm.log" || true)
[ "$n_sbatch" -gt 0 ] || die "SLURM run submitted no SLURM jobs"
log "SLURM run done in ${t_slurm} s ($n_sbatch sbatch jobs)"

log "local run: snakemake --cores $LOCAL_CORES ... -> $RUN_LOCAL"
t0=$SECONDS
smk "$RUN_LOCAL" "$WORK/log/snakemake-local.log" --cores "$LOCAL_CORES" \
  || { tail -n 40 "$WORK/log/snakemake-local.log" >&2; die "local run failed (log above)"; }
t_local=$((SECONDS - t0))
log "local run done in ${t_local} s"

# ------------------------------------------------------------ 4. compare
outputs() {  # every file a run wrote under results/ but its logs (timestamped lines), sorted
  (cd "$1" && find results -path results/logs -prune -o -type f -print | LC_ALL=C sort)
}
outputs "$RUN_SLURM" >"$WORK/files-slurm.txt"
outputs "$RUN_LOCAL" >"$WORK/files-local.txt"
if ! diff "$WORK/files-slurm.txt" "$WORK/files-local.txt" >"$WORK/files.diff"; then
  cat "$WORK/files.diff" >&2
  die "the two runs wrote different sets of files (< SLURM, > local)"
fi
for f in results/tables/default/line_fluxes.csv results/tables/default/ratios.csv \
  results/tables/default/statistics.csv results/validation/default/recovery.csv \
  results/validation/default/flux_pulls.csv results/validation/default/summary.json; do
  grep -qxF "$f" "$WORK/files-slurm.txt" || die "expected output $f missing"
done
n_files=$(wc -l <"$WORK/files-slurm.txt")
mismatch=0
while IFS= read -r f; do
  if ! cmp -s "$RUN_SLURM/$f" "$RUN_LOCAL/$f"; then
    log "DIFFERS: $f"
    mismatch=$((mismatch + 1))
  fi
done <"$WORK/files-slurm.txt"
[ "$mismatch" -eq 0 ] || die "$mismatch of $n_files output files differ between the SLURM and the local run"
kinds=$(sed 's/.*\.//' "$WORK/files-slurm.txt" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')
log "all $n_files output files byte-identical ($kinds)"
log "wall time: SLURM run ${t_slurm} s, local run ${t_local} s"

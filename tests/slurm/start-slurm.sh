#!/usr/bin/env bash
# start-slurm.sh — bring up a REAL single-node SLURM cluster on this machine
# (used by .ci/run and tests/test_workflow.py for the Slurm run of the workflow;
# Debian/Ubuntu hosts only; safe to rerun.)
# (Debian 12 "bookworm", Slurm 22.05 from Debian, munge auth, no cgroups,
# select/cons_tres, optional fake GPUs, optional slurmdbd+MariaDB accounting).
#
# Idempotent: installs packages only if missing, rewrites configs, (re)starts
# only daemons that are not running or whose config changed, then waits until
# `sinfo` reports the node idle.  Must run as root.  Stop with stop-slurm.sh.
#
# Knobs (environment variables):
#   SLURM_LAB_ACCOUNTING=0|1   1 = also install/start MariaDB + slurmdbd so that
#                              `sacct` works (plugin default status command).
#                              0 (default) = no accounting; sacct then fails with
#                              "Slurm accounting storage is disabled", so
#                              snakemake must use --slurm-status-command squeue.
#   SLURM_LAB_GPUS=N           number of fake GPUs (gres gpu:fake:N), default 2,
#                              0 = no GRES.  Devices are symlinks to /dev/null.
#   SLURM_LAB_CPUS=N           CPUs advertised to Slurm (default: real count).
#                              More than real => config_overrides + task/none.
#   SLURM_LAB_MEM_MB=N         RealMemory (default: physical MB - 512).
#   SLURM_LAB_PARTITION=name   default partition name (default: debug).
#   SLURM_LAB_MINJOBAGE=sec    MinJobAge (default 300; squeue-based status
#                              checks need >= 3 * init-seconds-before-status-checks).
#   SLURM_LAB_WAIT=sec         how long to wait for the node to become idle (60).
#   SLURM_LAB_ACCOUNTS="a b"   (accounting only) accounts to create; root and
#   SLURM_LAB_USERS="u1 u2"    these users get associations (plugin validates
#                              slurm_account via sacctmgr when accounting is on).
set -euo pipefail

ACCOUNTING="${SLURM_LAB_ACCOUNTING:-0}"
NGPUS="${SLURM_LAB_GPUS:-2}"
PARTITION="${SLURM_LAB_PARTITION:-debug}"
MINJOBAGE="${SLURM_LAB_MINJOBAGE:-300}"
WAIT_S="${SLURM_LAB_WAIT:-60}"
ACCOUNTS="${SLURM_LAB_ACCOUNTS:-}"
ACCT_USERS="root ${SLURM_LAB_USERS:-}"
CLUSTER=smklab
STATE=/var/lib/slurm-lab          # all state of this lab cluster lives here
LOGDIR=/var/log/slurm-lab
CONF=/etc/slurm                   # default location read by all slurm tools
DB_PASS=slurmlab                  # local-only MariaDB password for slurmdbd

log() { echo "[start-slurm] $*" >&2; }
die() { echo "[start-slurm] ERROR: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------- packages --
pkgs=(slurmctld slurmd slurm-client munge)
[ "$ACCOUNTING" = 1 ] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  t0=$(date +%s)
  apt-get update -qq
  # --no-install-recommends: 8 packages/13 MB instead of 42 packages for slurm
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  log "apt-get took $(( $(date +%s) - t0 )) s"
fi

# ---------------------------------------------------------------- helpers ---
. "$(dirname "$0")/pidfile.sh"  # pid_alive, stop_pid
# install_file SRC DST MODE OWNER : replace DST if different; echo 1 if changed
install_file() {
  local src=$1 dst=$2 mode=$3 owner=$4
  if [ -f "$dst" ] && cmp -s "$src" "$dst"; then rm -f "$src"; echo 0; return; fi
  install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$src" "$dst"; rm -f "$src"; echo 1
}

# ---------------------------------------------------------------- node facts -
NODE=$(hostname -s)
read -r REAL_CPUS REAL_MEM < <(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*RealMemory=\([0-9]*\).*/\1 \2/p')
[ -n "${REAL_CPUS:-}" ] || die "could not parse 'slurmd -C'"
CPUS="${SLURM_LAB_CPUS:-$REAL_CPUS}"
MEM="${SLURM_LAB_MEM_MB:-$(( REAL_MEM - 512 ))}"
if [ "$CPUS" -gt "$REAL_CPUS" ]; then
  # advertise more CPUs than exist: slurmd must trust slurm.conf, and CPU
  # binding (task/affinity) would fail with "Unable to layout tasks".
  TASKPLUGIN=task/none; SLURMD_PARAMS="SlurmdParameters=config_overrides"
  NODE_HW="CPUs=$CPUS"
else
  TASKPLUGIN=task/affinity; SLURMD_PARAMS=""
  NODE_HW="CPUs=$CPUS"
fi

mkdir -p "$STATE"/ctld "$STATE"/d "$STATE"/gpus "$LOGDIR" "$CONF"
chown slurm:slurm "$STATE"/ctld "$LOGDIR"

# Fake GPUs: gres/gpu needs File= entries that are character devices; a
# Count-only line is reported as 0 GPUs and the node goes INVAL, and regular
# files are rejected ("not a valid character or block device").  Symlinks to
# /dev/null pass the check and need no mknod.
GRES_LINE=""; GRESTYPES=""
if [ "$NGPUS" -gt 0 ]; then
  rm -f "$STATE"/gpus/fakegpu*
  for i in $(seq 0 $(( NGPUS - 1 ))); do ln -sf /dev/null "$STATE/gpus/fakegpu$i"; done
  GRES_LINE="Gres=gpu:fake:$NGPUS"; GRESTYPES="GresTypes=gpu"
fi

if [ "$ACCOUNTING" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment"
else
  ACCT="AccountingStorageType=accounting_storage/none"
fi

# ---------------------------------------------------------------- configs ---
tmp=$(mktemp -d)
cat > "$tmp/slurm.conf" <<EOF
# generated by start-slurm.sh — single-node lab cluster
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
# no cgroups: plain /proc process tracking
ProctrackType=proctrack/linuxproc
TaskPlugin=$TASKPLUGIN
$SLURMD_PARAMS
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=$MINJOBAGE
KillWait=5
InactiveLimit=0
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
$ACCT
$GRESTYPES
NodeName=$NODE NodeAddr=127.0.0.1 $NODE_HW RealMemory=$MEM $GRES_LINE State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
if [ "$NGPUS" -gt 0 ]; then
  printf 'AutoDetect=off\nNodeName=%s Name=gpu Type=fake File=%s/gpus/fakegpu[0-%d]\n' \
    "$NODE" "$STATE" $(( NGPUS - 1 )) > "$tmp/gres.conf"
else
  printf 'AutoDetect=off\n' > "$tmp/gres.conf"
fi
install_file "$tmp/slurm.conf" "$CONF/slurm.conf" 644 root:root >/dev/null
install_file "$tmp/gres.conf" "$CONF/gres.conf" 644 root:root >/dev/null
# hash of the config the slurm daemons were last started with (survives a
# failed earlier run that installed a new config but never restarted them)
CONF_HASH=$(cat "$CONF/slurm.conf" "$CONF/gres.conf" | sha256sum | cut -d' ' -f1)

# ---------------------------------------------------------------- munge -----
[ -s /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
  || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; }
chown munge:munge /etc/munge/munge.key; chmod 600 /etc/munge/munge.key
mkdir -p /run/munge; chown munge:munge /run/munge; chmod 755 /run/munge
if ! pid_alive /run/munge/munged.pid munged; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged
fi
munge -n | unmunge >/dev/null || die "munge round-trip failed"

# ---------------------------------------------------------------- accounting -
if [ "$ACCOUNTING" = 1 ]; then
  mkdir -p /run/mysqld /etc/mysql/conf.d; chown mysql:mysql /run/mysqld
  # the package postinst normally initialises the datadir; do it if it did not
  if [ ! -d /var/lib/mysql/mysql ]; then
    log "initialising MariaDB datadir"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$LOGDIR/mariadb-install-db.log" 2>&1
  fi
  if ! pid_alive /run/mysqld/mysqld.pid mariadbd; then
    log "starting mariadbd"
    setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
      --pid-file=/run/mysqld/mysqld.pid --socket=/run/mysqld/mysqld.sock \
      >"$LOGDIR/mariadbd.log" 2>&1 </dev/null &
  fi
  for i in $(seq 1 60); do mariadb-admin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1 && break; sleep 0.5; done
  mariadb-admin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1 || die "mariadbd did not come up (see $LOGDIR/mariadbd.log)"
  mariadb --socket=/run/mysqld/mysqld.sock -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat > "$tmp/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=$LOGDIR/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$DB_PASS
EOF
  install_file "$tmp/slurmdbd.conf" "$CONF/slurmdbd.conf" 600 slurm:slurm >/dev/null
  DBD_HASH=$(sha256sum < "$CONF/slurmdbd.conf" | cut -d' ' -f1)
  if pid_alive /run/slurmdbd.pid slurmdbd && [ "$(cat "$STATE/dbd.hash" 2>/dev/null)" != "$DBD_HASH" ]; then
    log "slurmdbd.conf differs from the running one -> restarting slurmdbd"
    stop_pid /run/slurmdbd.pid slurmdbd
  fi
  if ! pid_alive /run/slurmdbd.pid slurmdbd; then
    log "starting slurmdbd"; /usr/sbin/slurmdbd; echo "$DBD_HASH" > "$STATE/dbd.hash"
  fi
  for i in $(seq 1 60); do sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1 && break; sleep 0.5; done
  sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1 \
    || { tail -n 5 "$LOGDIR/slurmdbd.log" >&2; die "slurmdbd not reachable on localhost:6819"; }
  sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER" \
    || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  # The executor plugin validates `slurm_account` with sacctmgr when accounting
  # is on, so accounts used by test profiles must exist and be associated.
  for a in $ACCOUNTS; do
    sacctmgr -n -P show account format=account | grep -qx "$a" \
      || sacctmgr -i add account "$a" >/dev/null
    for u in $ACCT_USERS; do
      sacctmgr -n -P show assoc where user="$u" account="$a" format=account | grep -qx "$a" \
        || sacctmgr -i add user "$u" account="$a" >/dev/null
    done
  done
fi
rm -rf "$tmp"

# ---------------------------------------------------------------- slurm -----
if [ "$(cat "$STATE/slurm.hash" 2>/dev/null)" != "$CONF_HASH" ]; then
  if pid_alive /run/slurmctld.pid slurmctld || pid_alive /run/slurmd.pid slurmd; then
    log "slurm.conf/gres.conf differ from the running ones -> restarting slurmctld/slurmd"
  fi
  stop_pid /run/slurmd.pid slurmd
  stop_pid /run/slurmctld.pid slurmctld
fi
pid_alive /run/slurmctld.pid slurmctld || { log "starting slurmctld"; /usr/sbin/slurmctld; }
pid_alive /run/slurmd.pid slurmd || { log "starting slurmd"; /usr/sbin/slurmd; }
echo "$CONF_HASH" > "$STATE/slurm.hash"

# ---------------------------------------------------------------- wait ------
resumed=0; state=""
for i in $(seq 1 $(( WAIT_S * 2 ))); do
  state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1 || true)
  case "$state" in
    idle|mixed|allocated) break ;;
    drain*|down*|inval*|fail*)
      if [ "$resumed" = 0 ]; then
        log "node is '$state' ($(sinfo -h -n "$NODE" -o %E)); trying resume"
        scontrol update nodename="$NODE" state=resume 2>/dev/null || true; resumed=1
      fi ;;
  esac
  sleep 0.5
done
case "$state" in
  idle|mixed|allocated) ;;
  *) tail -n 20 "$LOGDIR"/slurmctld.log "$LOGDIR"/slurmd.log >&2 || true
     die "node $NODE not idle after ${WAIT_S}s (state='$state')" ;;
esac
# After a restart slurmctld may report the node 'idle' from its saved state
# before slurmd has re-registered, so prove it with a real job step.
t0=$(date +%s%N)
timeout 60 srun -Q -N1 -n1 -t 1 true || die "smoke test 'srun true' failed (see $LOGDIR)"
log "smoke test 'srun true' ok ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
log "cluster '$CLUSTER' up: node $NODE state=$state cpus=$CPUS mem=${MEM}MB gpus=$NGPUS accounting=$ACCOUNTING partition=$PARTITION"
sinfo -N -o "%N %P %T %c %m %G"

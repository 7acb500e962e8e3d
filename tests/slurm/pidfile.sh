# pidfile.sh — sourced by start-slurm.sh and stop-slurm.sh (they define `log`).
# pid_alive PIDFILE COMM : true if the pidfile names a live process called COMM
pid_alive() {
  local pf=$1 comm=$2 pid
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$comm" ]
}
# stop_pid PIDFILE COMM : TERM, then KILL after 10 s; never kills by process name
stop_pid() {
  local pf=$1 comm=$2 pid
  if ! pid_alive "$pf" "$comm"; then rm -f "$pf"; return 0; fi
  pid=$(cat "$pf"); log "stopping $comm (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then log "$comm did not exit, sending KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pf"
}

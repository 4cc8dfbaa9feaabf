#!/bin/sh
# qimg-idle: stops the container (and so the Qarnot task, and its billing) once no ssh session has
# been open for QIMG_IDLE_STOP seconds. qimg-start runs it in the background when QIMG_IDLE_STOP is
# set. A session is a logged-in ssh connection of any kind (a shell, a command, a tunnel, scp/sftp,
# an editor's remote): sshd names its process "sshd: USER" or "sshd: USER@TTY" ("sshd-session: ..."
# from OpenSSH 9.8) once the user is in. The listener and connections not logged in yet ("[net]",
# "USER [priv]") do not count, so a port scan does not keep the task alive. Sessions are counted
# every second: one shorter than that may go unseen.
# Each time the idle clock starts it prints "qimg-idle: stop-at EPOCH" (`qimg ls` shows the time
# left), "qimg-idle: in-use" when a session opens, and why it stops; stopping is SIGTERM to sshd,
# which then exits, and the container with it. Data comes only from the environment:
#   QIMG_IDLE_STOP  seconds without any session before stopping, a whole number above 0
#   QIMG_SSHD_PID   sshd's pid: qimg-start passes its own, which its exec hands over to sshd
set -eu

fail() {
    printf 'qimg-idle: %s\n' "$*" >&2
    exit 1
}

case "${QIMG_IDLE_STOP:-}" in
'' | *[!0-9]* | 0*) fail "QIMG_IDLE_STOP must be a whole number of seconds above 0, not '${QIMG_IDLE_STOP:-}'" ;;
esac
case "${QIMG_SSHD_PID:-}" in
'' | *[!0-9]*) fail "QIMG_SSHD_PID must be sshd's pid, not '${QIMG_SSHD_PID:-}'" ;;
esac

# Sets `sessions` to the number of logged-in ssh connections. /proc is read directly: pgrep and ps
# are missing from slim images. comm (never retitled) picks sshd's processes, cmdline holds the title.
count_sessions() {
    sessions=0
    for process in /proc/[0-9]*; do
        comm=""
        read -r comm 2>/dev/null <"$process/comm" || continue # ended meanwhile
        case "$comm" in sshd | sshd-session) ;; *) continue ;; esac
        title=$(tr -d '\0' 2>/dev/null <"$process/cmdline") || continue
        case "$title" in sshd:\ * | sshd-session:\ *) ;; *) continue ;; esac
        case "${title#*: }" in '' | \[* | *\ *) ;; *) sessions=$((sessions + 1)) ;; esac
    done
}

state=""
stop_at=0
while :; do
    count_sessions
    now=$(date +%s)
    if [ "$sessions" -gt 0 ]; then
        [ "$state" = in-use ] || printf 'qimg-idle: in-use (an ssh session is open: no idle stop while one is)\n'
        state=in-use
    else
        if [ "$state" != idle ]; then
            stop_at=$((now + QIMG_IDLE_STOP))
            printf 'qimg-idle: stop-at %s (after %s s without an ssh session)\n' "$stop_at" "$QIMG_IDLE_STOP"
            state=idle
        fi
        if [ "$now" -ge "$stop_at" ]; then
            printf 'qimg-idle: no ssh session for %s s: stopping sshd\n' "$QIMG_IDLE_STOP"
            kill -TERM "$QIMG_SSHD_PID"
            exit 0
        fi
    fi
    sleep 1
done

#!/bin/sh
# qimg-lifecycle: a devcontainer's lifecycle commands (`qimg build --devcontainer`), run as the Dev
# Containers specification runs them: onCreateCommand, updateContentCommand and postCreateCommand once in
# a new container, postStartCommand at every start (on Qarnot every instance is a new container), both
# by qimg-start; postAttachCommand each time qimg attaches a session (`qimg-lifecycle attached`, run by
# qimg as the login user: it appends a line to the attach file, which this script, as root, follows once
# the other hooks are done). Each command runs as the login user in a login shell (the environment an
# ssh session has), from the workspace folder; the commands of one hook (its object form) run in
# parallel; a hook that fails stops the hooks after it. Their output is the container's: `qimg logs`.
# Exit code: 0, or 1 when a hook failed.
#   /etc/qimg/lifecycle/N-HOOK/M-NAME  one command for /bin/sh per file, in order (N, M: two digits)
#   /etc/qimg/workspace-folder         the folder the commands start in
set -eu

attach_file=/run/qimg/attached # one line per attach; written by the login user, read here

if [ "${1:-}" = attached ]; then
    # The runner makes the file as it starts, beside sshd: a request in its first moments waits for it
    # (5 s at most). Without it no runner follows the requests, and qimg says so: a request lost in
    # silence would be a hook that never runs.
    waited=0
    while [ ! -f "$attach_file" ]; do
        if [ "$waited" -ge 5 ]; then
            printf 'qimg-lifecycle: no %s: this task runs no postAttachCommand\n' "$attach_file" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    # Appending never waits for the reader (a FIFO would, while postCreateCommand still runs).
    printf 'attach\n' >>"$attach_file"
    exit 0
fi

say() { printf 'qimg-lifecycle: %s\n' "$*"; }

login_user=$(cat /etc/qimg/login-user)
workspace=$(cat /etc/qimg/workspace-folder)
created=/var/lib/qimg/created # kept across restarts of the same container, unlike /run
again=""
[ ! -e "$created" ] || again=yes
mkdir -p /var/lib/qimg
: >"$created"

# run_hook FOLDER: its commands in parallel, as the login user; 1 when one failed.
run_hook() {
    name=${1##*/}
    name=${name#*-}
    pids=""
    for file in "$1"/*; do
        label=${file##*/}
        label=${label#*-}
        say "$name${label:+ ($label)}: running as $login_user"
        # The paths are qimg's own (no quote in them: the workspace folder is checked when it is read).
        su -l -s /bin/sh "$login_user" -c "cd '$workspace' 2>/dev/null || cd; exec /bin/sh '$file'" &
        pids="$pids $!"
    done
    failed=""
    for pid in $pids; do
        status=0
        wait "$pid" || status=$?
        [ "$status" = 0 ] || failed="$failed $status"
    done
    if [ -n "$failed" ]; then
        say "$name failed (exit code${failed})"
        return 1
    fi
    say "$name: done"
}

# The postAttachCommand folders: the features' (in their install order), then the file's.
attach_hooks=""
for hook in /etc/qimg/lifecycle/*-postAttachCommand; do
    [ ! -d "$hook" ] || attach_hooks="$attach_hooks $hook"
done
if [ -n "$attach_hooks" ]; then
    # Made before the other hooks run: a session attached meanwhile is answered once they are done.
    mkdir -p "${attach_file%/*}"
    rm -f "$attach_file"
    install -m 0600 -o "$login_user" /dev/null "$attach_file"
fi

for hook in /etc/qimg/lifecycle/*; do
    [ -d "$hook" ] || continue
    name=${hook##*/}
    name=${name#*-}
    [ "$name" != postAttachCommand ] || continue
    if [ -n "$again" ] && [ "$name" != postStartCommand ]; then
        continue
    fi
    if ! run_hook "$hook"; then
        say "the hooks after $name do not run"
        exit 1
    fi
done

[ -n "$attach_hooks" ] || exit 0
# Each line is one attach, and runs the hooks in the background: an attach never waits behind another
# (a hook may start a server). tail -F follows the file from its first line: the attaches made while the
# hooks above ran are answered too.
tail -n +1 -F "$attach_file" 2>/dev/null | while read -r _; do
    (
        # The folders are qimg's own paths, without spaces: split on purpose.
        # shellcheck disable=SC2086
        for hook in $attach_hooks; do
            run_hook "$hook" || break
        done
    ) &
done

#!/bin/sh
# qimg-lifecycle: a devcontainer's lifecycle commands (`qimg build --devcontainer`), run by qimg-start as
# the Dev Containers specification runs them: onCreateCommand, updateContentCommand and postCreateCommand
# once in a new container, postStartCommand at every start (on Qarnot every instance is a new container).
# Each runs as the login user in a login shell (the environment an ssh session has), from the workspace
# folder; the commands of one hook (its object form) run in parallel; a hook that fails stops the hooks
# after it. Their output is the container's: `qimg logs`. Exit code: 0, or 1 when a hook failed.
#   /etc/qimg/lifecycle/N-HOOK/M-NAME  one command for /bin/sh per file, in order (N, M: two digits)
#   /etc/qimg/workspace-folder         the folder the commands start in
set -eu

say() { printf 'qimg-lifecycle: %s\n' "$*"; }

login_user=$(cat /etc/qimg/login-user)
workspace=$(cat /etc/qimg/workspace-folder)
created=/var/lib/qimg/created # kept across restarts of the same container, unlike /run
again=""
[ ! -e "$created" ] || again=yes
mkdir -p /var/lib/qimg
: >"$created"

for hook in /etc/qimg/lifecycle/*; do
    [ -d "$hook" ] || continue
    name=${hook##*/}
    name=${name#*-}
    if [ -n "$again" ] && [ "$name" != postStartCommand ]; then
        continue
    fi
    pids=""
    for file in "$hook"/*; do
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
        say "$name failed (exit code${failed}): the hooks after it do not run"
        exit 1
    fi
    say "$name: done"
done

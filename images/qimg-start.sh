#!/bin/sh
# qimg-start: the default command of qimg images, and the DOCKER_CMD of their Qarnot tasks.
# Writes the public keys from DOCKER_SSH for the login user, makes missing host keys and prints
# them ("qimg-host-key: TYPE BASE64") for the launcher to pin, exports the environment for login
# shells, then runs sshd in the foreground. Data comes only from the environment:
#   DOCKER_SSH           public keys, one per line (required)
#   QIMG_HOST_KEY_TYPES  host key types made at start when missing: ed25519 (default) and/or rsa
#   QIMG_DEADLINE        hard deadline, in Unix seconds: sshd, and so the container or task, stops
#                        then, whatever the attempt (a restarted instance keeps the task's deadline)
#   QIMG_MAX_SECONDS     hard limit counted from this start: the fallback without QIMG_DEADLINE, and
#                        a bound on the wait if the deadline came from a clock that was ahead
#   QIMG_SECRETS         names of secrets (`qimg run --secret NAME`), each passed by the platform as
#                        QARNOT_SECRET__NAME or NAME: only the login user's login shells see them
#   QIMG_COMMAND         a batch task's command: run as the login user, in a login shell, instead of sshd
set -eu
set -f # key lines are split into words below; never expand them as file names

die() {
    printf 'qimg-start: %s\n' "$*" >&2
    exit 1
}

login_user=$(cat /etc/qimg/login-user)
[ "$(id -u)" = 0 ] || die "run me as root: sshd needs root to separate privileges (users log in as $login_user)"
home=$(getent passwd "$login_user" | cut -d: -f6)
[ -n "$home" ] || die "the login user $login_user does not exist in this image"

whole_seconds() {
    case "$2" in
    *[!0-9]* | 0*) die "$1 must be a whole number of seconds above 0, not '$2'" ;;
    esac
}
seconds_left=""
if [ -n "${QIMG_MAX_SECONDS:-}" ]; then
    whole_seconds QIMG_MAX_SECONDS "$QIMG_MAX_SECONDS"
    seconds_left=$QIMG_MAX_SECONDS
fi
if [ -n "${QIMG_DEADLINE:-}" ]; then
    whole_seconds QIMG_DEADLINE "$QIMG_DEADLINE"
    # date +%s is not POSIX, but GNU coreutils and busybox both have it.
    until_deadline=$((QIMG_DEADLINE - $(date +%s)))
    if [ -z "$seconds_left" ] || [ "$until_deadline" -lt "$seconds_left" ]; then
        seconds_left=$until_deadline
    fi
    if [ "$seconds_left" -le 0 ]; then
        printf 'qimg-start: the task deadline passed %s s ago: not starting sshd\n' "$((-seconds_left))" >&2
        exit 0
    fi
fi

key_types="ssh-ed25519 ssh-rsa ecdsa-sha2-nistp256 ecdsa-sha2-nistp384 ecdsa-sha2-nistp521 sk-ssh-ed25519@openssh.com sk-ecdsa-sha2-nistp256@openssh.com"
is_key_type() {
    case " $key_types " in *" $1 "*) return 0 ;; esac
    return 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%s\n' "${DOCKER_SSH:-}" | tr -d '\r' >"$work/given"
: >"$work/keys"
lineno=0
while IFS= read -r line; do
    lineno=$((lineno + 1))
    case "$line" in
    *"PRIVATE KEY"* | *PuTTY-User-Key-File*)
        die "DOCKER_SSH line $lineno is a private key: pass the public key (the .pub file) and keep the private key on your machine" ;;
    esac
    # shellcheck disable=SC2086 # split the line into its fields: type, base64 body, comment
    set -- $line
    [ "$#" -gt 0 ] || continue
    key_type=$1
    body=${2:-}
    if [ "$key_type" = ssh-dss ]; then
        die "DOCKER_SSH line $lineno is a DSA key, which OpenSSH refuses: make an ed25519 key (ssh-keygen -t ed25519)"
    fi
    is_key_type "$key_type" ||
        die "DOCKER_SSH line $lineno does not start with a key type (ssh-ed25519, ssh-rsa, ecdsa-sha2-...): pass the contents of your .pub file"
    shift $(($# < 2 ? $# : 2))
    for word in "$@"; do
        ! is_key_type "$word" || die "DOCKER_SSH line $lineno holds several keys: put one key per line"
    done
    printf '%s %s\n' "$key_type" "$body" >"$work/one.pub"
    fingerprint=$(ssh-keygen -l -f "$work/one.pub" 2>/dev/null) ||
        die "DOCKER_SSH line $lineno is not a valid $key_type key (truncated or corrupted base64?)"
    bits=${fingerprint%% *}
    if [ "$key_type" = ssh-rsa ] && [ "$bits" -lt 2048 ]; then
        die "DOCKER_SSH line $lineno is a $bits-bit RSA key: use at least 2048 bits, or better an ed25519 key"
    fi
    cut -d' ' -f1,2 "$work/keys" | grep -qxF "$key_type $body" || printf '%s\n' "$key_type $body${*:+ $*}" >>"$work/keys"
done <"$work/given"
[ -s "$work/keys" ] ||
    die "DOCKER_SSH holds no public key: pass yours, e.g. docker run -e DOCKER_SSH=\"\$(cat ~/.ssh/id_ed25519.pub)\" ..."

# The file is replaced, never appended to: a restart does not duplicate keys.
group=$(id -gn "$login_user")
mkdir -p "$home/.ssh"
chmod go-w "$home"
chown "$login_user:$group" "$home/.ssh"
chmod 0700 "$home/.ssh"
install -o "$login_user" -g "$group" -m 0600 "$work/keys" "$home/.ssh/authorized_keys.new"
mv -f "$home/.ssh/authorized_keys.new" "$home/.ssh/authorized_keys"

# The task's working directory (DOCKER_WORKDIR: /job for qimg's data options) is made by the
# platform, owned by root as far as anyone knows: the login user gets it, and the inputs in it, so
# that results can be written there. -h: a link in it is changed itself, never what it points to.
if [ -n "${DOCKER_WORKDIR:-}" ] && [ -d "$DOCKER_WORKDIR" ]; then
    chown -hR "$login_user:$group" "$DOCKER_WORKDIR"
fi

# /run is often a fresh tmpfs, so the directory made at build time may be gone.
mkdir -p /run/sshd
chown root:root /run/sshd
chmod 0755 /run/sshd

host_key_args=""
for type in ${QIMG_HOST_KEY_TYPES:-ed25519}; do
    case "$type" in
    ed25519 | rsa) ;;
    *) die "QIMG_HOST_KEY_TYPES: unsupported host key type '$type': use ed25519 (the default) and/or rsa" ;;
    esac
    key=/etc/ssh/ssh_host_${type}_key
    if [ ! -s "$key" ] || [ ! -s "$key.pub" ]; then
        rm -f "$key" "$key.pub"
        ssh-keygen -q -t "$type" -N '' -C '' -f "$key"
    fi
    printf 'qimg-host-key: %s\n' "$(cut -d' ' -f1,2 "$key.pub")"
    host_key_args="$host_key_args -h $key"
done

# Secrets go to a file of the login user's (0600), sourced by their login shells: never to /etc,
# never to the environment dump below, and out of sshd's environment before it starts.
secrets_file=.config/qimg/secrets
if [ -n "${QIMG_SECRETS:-}" ]; then
    : >"$work/secrets"
    for name in $QIMG_SECRETS; do
        case "$name" in
        [!A-Z_]* | *[!A-Z0-9_]*) die "QIMG_SECRETS: '$name' is not an upper-case variable name" ;;
        esac
        if eval "[ -n \"\${QARNOT_SECRET__$name+set}\" ]"; then
            eval "value=\${QARNOT_SECRET__$name}"
        elif eval "[ -n \"\${$name+set}\" ]"; then
            eval "value=\${$name}"
        else
            die "secret $name did not reach the container (neither QARNOT_SECRET__$name nor $name is set)"
        fi
        printf "export %s='%s'\n" "$name" "$(printf '%s' "$value" | sed "s/'/'\\\\''/g")" >>"$work/secrets"
        unset "QARNOT_SECRET__$name" "$name" value
    done
    for dir in "$home/.config" "$home/.config/qimg"; do
        [ -d "$dir" ] || install -d -o "$login_user" -g "$group" -m 0700 "$dir"
    done
    install -o "$login_user" -g "$group" -m 0600 "$work/secrets" "$home/$secrets_file"
fi

# sshd gives sessions a clean environment: hand the container's to login shells, minus keys,
# credentials and the variables every session sets for itself.
profile=/etc/profile.d/qimg-env.sh
{
    printf '# Written by qimg-start: the container environment for login shells.\n'
    # A process or two per variable would cost the start some 3 ms each (a dozen variables on a
    # task): the names are upper-cased in one `tr`, and a value is piped through sed only when it
    # holds a quote or a newline (otherwise sed would give it back unchanged).
    names=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' | sort -u)
    # shellcheck disable=SC2086 # one word per name: names hold no blank
    set -- $(printf '%s\n' $names | tr '[:lower:]' '[:upper:]')
    for name in $names; do
        upper=$1
        shift
        case "$upper" in
        DOCKER_SSH | DOCKER_REGISTRY_* | QARNOT_* | *PASSWORD* | *PASSWD* | *SECRET* | *TOKEN* | *CREDENTIAL* | *PRIVATE* | *_KEY | *_KEYS) continue ;;
        HOME | USER | LOGNAME | SHELL | PWD | OLDPWD | SHLVL | TERM | HOSTNAME | MAIL | PS1 | PS2 | PS4 | IFS | PPID | _) continue ;;
        esac
        case " ${QIMG_SECRETS:-} " in *" $name "*) continue ;; esac
        eval "[ -n \"\${$name+set}\" ]" || continue
        value=""
        eval "value=\${$name}"
        case "$value" in
        *"'"* | *"
"*) value=$(printf '%s' "$value" | sed "s/'/'\\\\''/g") ;;
        esac
        printf "export %s='%s'\n" "$name" "$value"
    done
    # shellcheck disable=SC2016 # $HOME is the login shell's to expand: each user reads their own file
    printf 'if [ -r "$HOME/%s" ]; then . "$HOME/%s"; fi\n' "$secrets_file" "$secrets_file"
} >"$profile.new"
chmod 0644 "$profile.new"
mv -f "$profile.new" "$profile"

if [ -n "$seconds_left" ]; then
    # A shell of its own, not a subshell: a fork keeps in /proc/PID/environ the environment this
    # script was started with (the secrets' values, unset above only in this shell), an exec does not.
    # shellcheck disable=SC2016 # expanded by the watcher: $1 the seconds left, $2 sshd's pid
    watch_deadline='sleep "$1"; printf "qimg-start: hard deadline of %s s reached: stopping sshd\n" "$1" >&2; kill -TERM "$2"'
    sh -c "$watch_deadline" qimg-deadline "$seconds_left" $$ & # exec below keeps the pid: $$ is sshd's
fi
[ -z "${QIMG_IDLE_STOP:-}" ] || QIMG_SSHD_PID=$$ /usr/local/sbin/qimg-idle &

# A devcontainer's lifecycle commands (`qimg build --devcontainer`): before a batch task's command,
# beside sshd otherwise. Started after the environment above is written: they run in login shells.
lifecycle=/usr/local/sbin/qimg-lifecycle
if [ -n "${QIMG_COMMAND:-}" ]; then
    # A batch task (`qimg run --command` on a profile without ssh): the command is the task. It runs
    # in a login shell of the login user, so with the environment and secrets an ssh session has, and
    # its exit code ends the task (Success or Failure). The deadline above stops it as it would sshd.
    if [ -x "$lifecycle" ]; then "$lifecycle"; fi
    printf 'qimg-start: running the command as %s\n' "$login_user"
    trap - EXIT
    rm -rf "$work"
    exec su -l "$login_user" -c "$QIMG_COMMAND"
fi
if [ -x "$lifecycle" ]; then "$lifecycle" & fi
printf 'qimg-start: sshd starting, login as %s\n' "$login_user"
trap - EXIT
rm -rf "$work"
# shellcheck disable=SC2086 # one word per argument; host key paths have no spaces
exec /usr/sbin/sshd -D -e $host_key_args

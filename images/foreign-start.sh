#!/bin/sh
# The DOCKER_CMD qimg sends for an image it did not build, run as `sh -c` with DOCKER_USER=root: what
# qimg-start does, for root, on any image with /usr/sbin/sshd and /usr/bin/ssh-keygen. Data comes
# only from the environment (DOCKER_SSH, QIMG_DEADLINE, QIMG_MAX_SECONDS): nothing is ever quoted
# into this text. Qarnot substitutes dollar-brace names in constants before the container starts, so
# this text has none: the optional variables are read under `set +u` instead.
set -eu
umask 077
set +u
deadline=$QIMG_DEADLINE
max_seconds=$QIMG_MAX_SECONDS
set -u
for value in "$deadline" "$max_seconds"; do
    case "$value" in
    *[!0-9]* | 0*)
        echo "qimg: QIMG_DEADLINE and QIMG_MAX_SECONDS must be whole numbers above 0" >&2
        exit 1
        ;;
    esac
done
# The deadline (Unix seconds, fixed at submit) holds for every attempt; max_seconds counts from
# this start, and bounds the wait if the submitting machine's clock was ahead.
left=$max_seconds
if [ -n "$deadline" ]; then
    until_deadline=$((deadline - $(date +%s)))
    if [ -z "$left" ] || [ "$until_deadline" -lt "$left" ]; then
        left=$until_deadline
    fi
    if [ "$left" -le 0 ]; then
        echo "qimg: the task's deadline has passed: not starting sshd" >&2
        exit 0
    fi
fi
mkdir -p /root/.ssh
printf '%s\n' "$DOCKER_SSH" >/root/.ssh/authorized_keys
mkdir -p /run/sshd
chmod 0755 /run/sshd
key=/etc/ssh/qimg_host_ed25519_key
rm -f "$key" "$key.pub"
/usr/bin/ssh-keygen -q -t ed25519 -N '' -f "$key"
printf 'qimg-host-key: %s\n' "$(cut -d' ' -f1,2 "$key.pub")"
if [ -n "$left" ]; then
    main=$$
    (sleep "$left" && kill -TERM "$main") &
fi
exec /usr/sbin/sshd -D -e -h "$key" -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no -o PermitRootLogin=prohibit-password

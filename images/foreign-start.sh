#!/bin/sh
# The DOCKER_CMD qimg sends for an image it did not build (run with `sh -c`): what qimg-start does,
# for root, on any image that has openssh-server. Data comes only from the environment (DOCKER_SSH,
# QIMG_MAX_SECONDS): nothing is ever quoted into this text.
set -eu
umask 077
mkdir -p /root/.ssh
printf '%s\n' "$DOCKER_SSH" >/root/.ssh/authorized_keys
mkdir -p /run/sshd
chmod 0755 /run/sshd
key=/etc/ssh/qimg_host_ed25519_key
rm -f "$key" "$key.pub"
ssh-keygen -q -t ed25519 -N '' -f "$key"
printf 'qimg-host-key: %s\n' "$(cut -d' ' -f1,2 "$key.pub")"
if [ -n "${QIMG_MAX_SECONDS:-}" ]; then
    main=$$
    (sleep "$QIMG_MAX_SECONDS" && kill -TERM "$main") &
fi
exec /usr/sbin/sshd -D -e -h "$key" -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no -o PermitRootLogin=prohibit-password

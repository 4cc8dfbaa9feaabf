#!/bin/sh
# qimg-setup LOGIN_USER [UID GID [sudo]]: run once by the Dockerfile of a qimg image.
# Creates the login user (unless root), records it for qimg-start, makes sshd read qimg's drop-in
# first, makes pam_loginuid optional (containers often lack CAP_AUDIT_WRITE), and checks sshd's
# configuration. Account policy when the base image already has some of the ids:
#   - the user name exists: it is used if its uid is UID, refused otherwise; it keeps its home, and its
#     shell unless that is no login shell (nologin, false, missing);
#   - UID belongs to another user (ubuntu:24.04 has "ubuntu" at 1000): that user is renamed, with
#     its home and its same-named group, so files the base gave uid UID stay the login user's;
#   - GID exists as another group: it becomes the user's primary group.
set -eu

say() { printf 'qimg-setup: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

login_user=$1

field() { # field DATABASE KEY N: field N of the DATABASE entry for KEY, empty when there is none
    getent "$1" "$2" | cut -d: -f"$3" || true
}

# check_mapped uid|gid ID: the build's user namespace maps ID; rootless Podman maps only its user's
# subordinate ids (often 65536), and a chown to another fails later with a bare "Invalid argument".
check_mapped() {
    map=/proc/self/$1_map
    [ -r "$map" ] || return 0
    ranges=$(awk -v id="$2" '
        { last = $1 + $3 - 1; shown = shown (shown == "" ? "" : ", ") $1 "-" last }
        $1 <= id && id <= last { found = 1 }
        END { if (found) exit 1; print shown }' "$map") || return 0
    die "$1 $2 is not among the ids this engine maps ($ranges): rootless Podman maps only your subordinate ids (/etc/sub$1): choose a $1 among them, or give your user more"
}

if [ "$login_user" != root ]; then
    uid=$2 gid=$3 sudo=${4:-}
    check_mapped uid "$uid"
    check_mapped gid "$gid"
    shell=/bin/sh
    [ ! -x /bin/bash ] || shell=/bin/bash

    ensure_group() { # afterwards a group with gid $gid exists
        [ -z "$(field group "$gid" 1)" ] || return 0
        taken=$(field group "$login_user" 3)
        [ -z "$taken" ] || die "group $login_user already exists in the base image with gid $taken: build with --gid $taken"
        groupadd -g "$gid" "$login_user"
    }

    existing_uid=$(field passwd "$login_user" 3)
    uid_owner=$(field passwd "$uid" 1)
    if [ -n "$existing_uid" ]; then
        [ "$existing_uid" = "$uid" ] ||
            die "user $login_user already exists in the base image with uid $existing_uid: build with --uid $existing_uid"
        ensure_group
        own_shell=$(field passwd "$login_user" 7)
        case "$own_shell" in
        "" | */nologin | */false) ;;
        *) [ ! -x "$own_shell" ] || shell=$own_shell ;;
        esac
        usermod -g "$gid" -s "$shell" "$login_user"
    elif [ -n "$uid_owner" ]; then
        say "uid $uid belongs to $uid_owner in the base image: renaming it to $login_user"
        old_group=$(id -gn "$uid_owner")
        if [ "$old_group" = "$uid_owner" ] && [ "$(field group "$old_group" 3)" = "$gid" ] &&
            [ -z "$(field group "$login_user" 1)" ]; then
            groupmod -n "$login_user" "$old_group"
        fi
        ensure_group
        usermod -l "$login_user" -d "/home/$login_user" -m -g "$gid" -s "$shell" "$uid_owner"
    else
        ensure_group
        # -l: no lastlog/faillog entry, which for a large uid is a huge sparse file.
        useradd -l -m -u "$uid" -g "$gid" -s "$shell" "$login_user"
    fi
    # '*': not locked (sshd refuses locked accounts when PAM is off) and no password that can work.
    usermod -p '*' "$login_user"

    home=$(field passwd "$login_user" 6)
    group=$(id -gn "$login_user")
    mkdir -p "$home/.ssh"
    chown "$login_user:$group" "$home" "$home/.ssh"
    chmod go-w "$home"
    chmod 0700 "$home/.ssh"

    if [ "$sudo" = sudo ]; then
        printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$login_user" >"/etc/sudoers.d/qimg-$login_user"
        chmod 0440 "/etc/sudoers.d/qimg-$login_user"
    fi
fi

mkdir -p /etc/qimg
printf '%s\n' "$login_user" >/etc/qimg/login-user

# Debian 12, Ubuntu 22.04+ and RHEL 9 include the drop-ins at the top already; older ones do not.
grep -Eq '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/' /etc/ssh/sshd_config ||
    sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config
if [ -f /etc/pam.d/sshd ]; then
    sed -i -E 's/^(session[[:space:]]+)required([[:space:]]+pam_loginuid\.so)/\1optional\2/' /etc/pam.d/sshd
fi

# Group-exchange moduli under 3072 bits give 112-bit strength at best: keep only the larger ones.
if [ -s /etc/ssh/moduli ]; then
    awk '$5 >= 3071' /etc/ssh/moduli >/etc/ssh/moduli.qimg
    mv /etc/ssh/moduli.qimg /etc/ssh/moduli
fi

# sshd -t needs a host key and the privilege separation directory; neither stays in the image.
mkdir -p /run/sshd
check_key=$(mktemp -u /tmp/qimg-check-key.XXXXXX)
ssh-keygen -q -t ed25519 -N '' -f "$check_key"
status=0
/usr/sbin/sshd -t -h "$check_key" || status=$?
rm -f "$check_key" "$check_key.pub" /etc/ssh/ssh_host_*
[ "$status" = 0 ] || die "sshd -t rejected the configuration"

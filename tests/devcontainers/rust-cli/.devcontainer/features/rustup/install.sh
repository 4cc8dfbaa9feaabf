#!/bin/sh
set -e
mkdir -p /opt/rustup && echo "$VERSION $PROFILE" > /opt/rustup/version

#!/bin/sh
set -e
mkdir -p /opt/pip-tools
echo "version=$VERSION sync=$INSTALLSYNC user=$_REMOTE_USER" > /opt/pip-tools/installed

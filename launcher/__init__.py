"""Start images and log into them: the local backend, sshd readiness, ssh with pinned host keys."""

"""qimg: ssh-ready container images for Qarnot tasks."""

__version__ = "0.1.0"

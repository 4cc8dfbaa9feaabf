"""Dockerfile templates and the scripts baked into images (package data)."""

"""Render Dockerfiles from the templates in qimg.images, and build images with the Docker SDK."""

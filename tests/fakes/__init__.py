"""Fakes of what cannot run here (the Qarnot API) and real services set up for tests (a registry)."""

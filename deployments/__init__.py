"""Deployments of the flows: shared names (`names`), deployments (`build`), run forms (`forms`)."""

"""Trained managers shipped with the package, one folder per dataset (``manager.pt`` + ``manager.json``,
which records the sha256 and the command that regenerates it). See :mod:`agent.manager`."""

"""Reply adapters shipped with the package, one folder per dataset (``adapter_model.safetensors``,
``adapter_config.json`` and ``reply.json``, which records the sha256s and the command that regenerates it).
See :mod:`agent.reply_adapter`."""

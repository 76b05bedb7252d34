"""edgefm-examples: one plugin per hook kind, the worked examples of docs/PLUGINS.md. Each module is
a plugin of its own (an entry point in group ``edgefm``, see pyproject.toml)."""

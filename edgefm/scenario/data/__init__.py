"""Package data: frozen scenario instances (``<name>.json``), loaded by `edgefm.scenario.load_frozen`.

See README.md in this folder for each instance's provenance and unit conversion.
"""

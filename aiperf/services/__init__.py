"""The services of the mesh, one module each (listed in plugins.yaml under ``service``)."""

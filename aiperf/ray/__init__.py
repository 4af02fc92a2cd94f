"""The Ray backend: a mesh's workers as Ray actors spread over a cluster's nodes.

Ray launches and supervises the workers; it is not on the data path. The controller,
timing manager, dataset manager, record processors and records manager stay on the
driver's host, and every actor runs the same worker service code as a forked local worker,
connecting back to the controller's TCP addresses with the mesh's CURVE keys
(``aiperf.common.curve``). Imported only for ``backend="ray"`` (the ``[ray]`` extra).
"""

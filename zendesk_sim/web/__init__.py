"""HTTP: ``app`` (one ``Request`` to one ``Response``: rate limit, fault, route, auth, the
endpoint), ``handler`` (the threaded server that moves the bytes) and ``control``
(``/_sim/*``, to drive a simulator in another process)."""

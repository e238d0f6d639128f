"""The API's formats, shared by both logs and holding no state: ``timestamps`` (Zendesk's
``YYYY-MM-DDTHH:MM:SSZ``), ``cursor`` (a record's ``Key`` and the opaque cursors naming
one), ``responses`` (``Response`` values and Zendesk's error bodies) and ``hashing``
(``mix``, the hash both logs' generated records are drawn from). Imports nothing else of
the simulator."""

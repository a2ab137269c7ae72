"""Operating dotdo without writing Python: the ``dotdo`` command (``cli``), the HTTP
API (``api``, run by ``serve`` under uvicorn or Ray Serve) and the dashboard
(``static``), all on one :class:`~dotdo.ops.service.Service`."""

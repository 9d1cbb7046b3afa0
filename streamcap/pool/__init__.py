"""The shared ASR pool: Whisper on Ray Serve replicas, used by daemons with ``asr.backend: ray``.

- :mod:`streamcap.pool.replica`: the Serve deployment (one model per replica, ``@serve.batch``
  across streams) and :class:`~streamcap.pool.replica.PoolReply`, what it returns;
- :mod:`streamcap.pool.app`: builds the Serve application from a streamcap config
  (``streamcap serve-asr``, ``serve run deploy/serve.yaml``);
- :mod:`streamcap.pool.client`: :class:`~streamcap.pool.client.RayDecoder`, the daemon's side;
- :mod:`streamcap.pool.outage`: what the daemon does while the pool is away (pure backoff
  schedule and the :class:`~streamcap.pool.outage.ResilientDecoder` shell).

Ray is an optional extra (``pip install '.[ray]'``); nothing here is imported on the default
(``asr.backend: local``) path.
"""

"""``treadlab station``: the acquisition daemon a lab leaves running (docs/station.md).

:mod:`~treadlab.pipeline.station.core` (devices kept open, health, trials, feedback),
:mod:`~treadlab.pipeline.station.store` (runner folders), :mod:`~treadlab.pipeline.station.feedback`
(cues, bands, fading), :mod:`~treadlab.pipeline.station.app` (HTTP + WebSocket API and the pages in
``static/``), :mod:`~treadlab.pipeline.station.server` (uvicorn, SIGTERM).
"""

"""The capture chain: device clocks onto one session clock (``clock``), the crash-safe
recorder (``recorder``), the live processor (``live``) and a whole capture session
(``session``)."""

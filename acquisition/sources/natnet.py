"""OptiTrack Motive over NatNet: labelled markers, unlabelled ones logged.

The connection is the ``natnet`` client from PyPI (``NatNetClient``: NatNet 2.x–4.x frame
parsing, unicast with keep-alives or multicast; pure Python, no SDK binary). Chosen over the
other NatNet packages on PyPI because it is maintained (2026 release), parses every NatNet
version from 2.x to 4.1 against the SDK's definitions, supports unicast (``natnetclient``
dates from 2018; ``natnetsdk``/``new-natnet-client`` repackage the SDK sample).

``[markers] driver = "natnet"`` with a ``[natnet]`` table:

- ``server``: the Motive PC; ``"auto"`` = the simulated lab's emulator. ``command_port``
  (1510), ``multicast`` (false: unicast, the client subscribes with keep-alives; true: join
  ``multicast_address`` 239.255.42.99 on ``data_port`` 1511), ``local_address`` (this PC's
  address on the mocap network);
- ``marker_set``: the Motive marker set whose markers are recorded (its names are matched to
  ``[markers].labels``, directly or through the CGM aliases);
- ``units_m``: mm per Motive unit (1000 when Motive streams metres, its default);
  ``lab_from_motive``: 3×3 rotation Motive frame → lab frame (default: Motive's Y-up frame →
  lab X forward, Y left, Z up: lab X = Motive Z, lab Y = Motive X, lab Z = Motive Y).

Each frame's marker-set positions become one row (NaN where Motive reports an occluded
marker as 0, 0, 0); the labelled-marker list is used for the occlusion flag. Unlabelled markers
(the legacy "other markers" list and labelled-marker entries flagged unlabelled) are not
recorded: they are counted (``unlabelled`` counter) and logged as one ``unlabelled`` event per
second of frames with the number seen.

UDP loses, reorders and duplicates datagrams: frames go through a reorder window (frame
numbers), as the TLMK reader does — ``reordered`` put back, ``drops`` per missing frame,
``late`` and ``duplicates`` discarded, each an event. When no frame arrives for
``silence_s`` s, the source logs a ``disconnect`` and connects again every ``reconnect_s``
s (``reconnects``). Device clock: the frame's Motive timestamp (s); ``seq``: the frame number.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, fields

import numpy as np
from natnet import NatNetClient

from treadlab.acquisition.sources.base import Block, Source, match_labels
from treadlab.acquisition.sources.markers_udp import MarkerSettings, setup_marker_source
from treadlab.config.errors import ConfigError, DeviceError
from treadlab.config.schema import NatNetTable, check_rotation, check_table

log = logging.getLogger(__name__)

@dataclass
class NatNetSettings(NatNetTable):
    """The ``[natnet]`` table as the driver takes it: the fields, units and defaults of
    :class:`treadlab.config.schema.NatNetTable` (see also the module docstring), checked by
    that declaration when built (ConfigError naming ``natnet.<key>``)."""

    def __post_init__(self):
        check_table(self, NatNetTable, "natnet")

    @classmethod
    def from_config(cls, cfg) -> "NatNetSettings":
        path = getattr(cfg, "path", None)
        table = getattr(cfg, "natnet", None)
        if table is None:
            raise ConfigError(path, "natnet", "missing: the natnet driver needs a [natnet] "
                              "table (server, marker_set)")
        table = dict(table) if isinstance(table, dict) else dict(vars(table))
        checked = check_table(table, NatNetTable, "natnet", path)
        check_rotation(checked.lab_from_motive, path, "natnet.lab_from_motive")
        return cls(**{f.name: getattr(checked, f.name) for f in fields(NatNetTable)})


class NatNetMarkers(Source):
    """Labelled markers from OptiTrack Motive (mm, lab frame; NaN = occluded).

    Parameters
    ----------
    settings : ``[markers]`` table (labels, ``rate_hz`` nominal Hz).
    natnet : :class:`NatNetSettings`.
    reorder_window : frames a missing frame may be overtaken by before it counts as lost.
    max_wait : s a missing frame is waited for.
    """

    kind = "markers"

    def __init__(self, settings, natnet: NatNetSettings, name: str = "markers",
                 reorder_window: int = 8, max_wait: float = 0.05):
        super().__init__(name)
        self._counters["unlabelled"] = 0
        setup_marker_source(self, settings)
        self.natnet = natnet
        self.where = f"natnet://{natnet.server}:{natnet.command_port}"
        self.port = self.where                 # named in errors by the capture
        self.window = int(reorder_window)
        self.max_wait = float(max_wait)
        self._R = np.asarray(natnet.lab_from_motive, float) * float(natnet.units_m)
        self._client = None
        self._frames: deque = deque()
        self._lock = threading.Lock()
        self._index: np.ndarray | None = None

    @classmethod
    def from_config(cls, cfg, lab=None, **kw) -> "NatNetMarkers":
        s = NatNetSettings.from_config(cfg)
        if lab is not None and getattr(lab, "natnet_address", None):
            s.server, s.command_port = lab.natnet_address[0], int(lab.natnet_address[1])
        elif s.server == "auto":
            raise ConfigError(getattr(cfg, "path", None), "natnet.server",
                              "\"auto\" is the simulated lab's emulator: start it first "
                              "(treadlab simulate lab --protocol natnet)")
        return cls(MarkerSettings.from_table(cfg.markers), s, **kw)

    # --- connection ---------------------------------------------------------------------

    def _connect(self, timeout: float):
        s = self.natnet
        client = NatNetClient(server_ip_address=s.server, local_ip_address=s.local_address,
                              multicast_address=s.multicast_address,
                              command_port=int(s.command_port), data_port=int(s.data_port),
                              use_multicast=bool(s.multicast))
        descs = []
        client.on_data_description_received_event.handlers.append(descs.append)
        client.on_data_frame_received_event.handlers.append(self._on_frame)
        try:
            client.connect(timeout=timeout)
        except (TimeoutError, OSError) as exc:
            client.shutdown()
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else "no answer"
        client.request_modeldef()
        deadline = time.monotonic() + timeout
        while not descs and time.monotonic() < deadline:
            client.update_sync()
            time.sleep(0.02)
        if not descs:
            client.shutdown()
            return None, "no model definitions (NAT_MODELDEF) answered"
        client.run_async()
        return client, descs[-1]

    def _map_labels(self, descs) -> None:
        sets = {d.name: list(d.marker_names) for d in descs.marker_sets}
        want = self.natnet.marker_set
        if not want:
            named = [n for n in sets if n.lower() != "all"]
            if len(named) != 1:
                raise DeviceError(f"{self.where}: Motive streams marker sets "
                                  f"{', '.join(sets) or 'none'}: name one in "
                                  "natnet.marker_set")
            want = named[0]
        if want not in sets:
            raise DeviceError(f"{self.where}: no marker set {want!r} (Motive streams "
                              f"{', '.join(sets) or 'none'})")
        names = sets[want]
        self._set = want
        self._index = match_labels(self.labels, names)
        self._n_set = len(names)
        self._event("natnet", f"{self.where}: marker set {want!r} with {len(names)} markers "
                    f"(Motive frame × {self.natnet.units_m:g} mm per unit → lab frame)",
                    level=logging.INFO)
        missing = [lab for lab, i in zip(self.labels, self._index) if i < 0]
        if missing:
            self._event("labels", f"{self.where}: marker set {want!r} has no "
                        f"{', '.join(missing)}; they read NaN")
        extra = sorted(set(range(len(names))) - {int(i) for i in self._index})
        if extra:
            self._event("labels", f"{self.where}: markers of {want!r} not in markers.labels, "
                        f"not recorded: {', '.join(names[i] for i in extra)}")

    def _open(self) -> None:
        client, got = self._connect(float(self.natnet.timeout_s))
        if client is None:
            raise DeviceError(f"{self.where}: cannot connect ({got}; is Motive streaming "
                              f"{'multicast' if self.natnet.multicast else 'unicast'} NatNet?)")
        try:
            self._map_labels(got)
        except DeviceError:
            client.shutdown()
            raise
        info = client.server_info
        how = (f"multicast {self.natnet.multicast_address}:{self.natnet.data_port}"
               if self.natnet.multicast else "unicast")
        self._event("natnet", f"{self.where}: {info.application_name} "
                    f"{info.server_version}, NatNet {info.nat_net_protocol_version}, {how}",
                    level=logging.INFO)
        self._client = client
        self._last_rx = time.monotonic()
        self._lost_at = None
        self._next_try = 0.0
        self._unlab_n = self._unlab_frames = 0
        self._unlab_t = time.monotonic()
        self._ref = self._next = None
        self._pending: dict = {}
        self._released: deque = deque()
        self._released_set: set = set()
        self._ready: list = []
        self._last_dev = -np.inf

    def _close(self) -> None:
        if self._client is not None:
            self._client.shutdown()
            self._client = None
        self._release(time.monotonic(), final=True)
        self._flush()
        self._report_unlabelled(force=True)

    def _on_frame(self, frame) -> None:
        host = time.monotonic()
        with self._lock:
            self._frames.append((host, frame))

    # --- reading --------------------------------------------------------------------------

    def _acquire(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                items = list(self._frames)
                self._frames.clear()
            if items or time.monotonic() >= deadline or self.stopping:
                break
            time.sleep(0.002)
        now = time.monotonic()
        for host, frame in items:
            self._handle(host, frame)
        if items:
            self._last_rx = now
            if self._lost_at is not None:
                self._event("reconnect", f"{self.where}: frames again after "
                            f"{now - self._lost_at:.2f} s", counter="reconnects")
                self._lost_at = None
        self._release(now)
        self._flush()
        self._report_unlabelled()
        if now - self._last_rx > float(self.natnet.silence_s):
            self._reconnect(now)

    def _reconnect(self, now: float) -> None:
        if self._lost_at is None:
            self._lost_at = now
            self._event("disconnect", f"{self.where}: no frame for "
                        f"{self.natnet.silence_s:g} s; connecting again every "
                        f"{self.natnet.reconnect_s:g} s", level=logging.WARNING)
        if now < self._next_try:
            return
        self._next_try = now + float(self.natnet.reconnect_s)
        if self._client is not None:
            self._client.shutdown()
            self._client = None
        client, got = self._connect(min(float(self.natnet.reconnect_s), 1.0))
        if client is not None:
            self._client = client
            self._last_rx = time.monotonic()

    def _handle(self, host: float, frame) -> None:
        sets = {m.model_name: m.marker_pos_list for m in frame.marker_sets or ()}
        pos = sets.get(self._set)
        fn = int(frame.prefix.frame_number)
        if pos is None or len(pos) != self._n_set:
            self._event("bad_packet", f"{self.where}: frame {fn}: marker set {self._set!r} "
                        f"{'missing' if pos is None else f'has {len(pos)} markers'}",
                        counter="bad_packets")
            return
        # frame order
        if self._ref is None:
            self._ref = self._next = fn
            f = fn
        else:
            d = ((fn - self._ref + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            f = self._ref + d
        if f < self._next:
            if f in self._released_set:
                self._event("duplicate", f"frame {f} received again; ignored",
                            counter="duplicates")
            else:
                self._event("late", f"frame {f} arrived after it was counted lost; ignored",
                            counter="late")
            return
        if f in self._pending:
            self._event("duplicate", f"frame {f} received again; ignored", counter="duplicates")
            return
        if f < self._ref:
            self._event("reordered", f"frame {f} arrived after frame {self._ref}; put back in "
                        "order", counter="reordered")
        stray = len(frame.unlabeled_marker_pos or ())
        stray_lab = sum(1 for m in (frame.labeled_markers or ()) if m.param and m.param & 0x10)
        # the legacy list repeats the unlabelled entries of the labelled list: count them once
        n_unlab = max(stray, stray_lab)
        if n_unlab:
            self._count("unlabelled", n_unlab)
            self._unlab_n += n_unlab
            self._unlab_frames += 1
        p = np.asarray(pos, np.float64)
        p[np.all(p == 0.0, axis=1)] = np.nan          # Motive's occluded marker
        out = np.full((len(self.labels), 3), np.nan)
        ok = self._index >= 0
        out[ok] = p[self._index[ok]] @ self._R.T
        self._ref = max(self._ref, f)
        t = float(frame.suffix.timestamp) if frame.suffix is not None else np.nan
        self._pending[f] = (host, t, out)

    def _release(self, now: float, final: bool = False) -> None:
        """Move frames whose turn has come to the ready list; declare lost slots as drops."""
        self._release_in_order(now, final,
                               lambda frame, item: self._ready.append((frame,) + item))

    def _flush(self) -> None:
        if not self._ready:
            return
        items, self._ready = self._ready, []
        while len(self._released) > 4096:
            self._released_set.discard(self._released.popleft())
        dev = np.array([v[2] for v in items], np.float64)
        dev = np.maximum.accumulate(np.maximum(dev, self._last_dev))
        self._last_dev = float(dev[-1])
        self._push(Block(stream="markers", device_time=dev,
                         host_time=np.array([v[1] for v in items], np.float64),
                         data=np.stack([v[3] for v in items]).astype(np.float32),
                         seq=np.array([v[0] for v in items], np.int64)))

    def _report_unlabelled(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._unlab_n and (force or now - self._unlab_t >= 1.0):
            self._event("unlabelled", f"{self.where}: {self._unlab_n} unlabelled markers in "
                        f"{self._unlab_frames} frames (not recorded)", level=logging.DEBUG)
            self._unlab_n = self._unlab_frames = 0
            self._unlab_t = now

"""Live frames off the UI thread: raw BGRX screenshots from a guest socket, as QImages.

The panel opens its own ``GuestClient`` per sandbox socket (never going through the
training process), with the checks the sandbox's host record asks for
(``vm.sandboxes.trust_for_socket``). Each fetch runs on a QThreadPool worker, converts the X server's
BGRX bytes to a QImage without a per-pixel copy (BGRX in memory is Qt's RGB32 on a
little-endian machine), scales it to the size the view asks for, and hands it to the
UI thread through a queued signal. At most one fetch per sandbox is in flight, so a
slow sandbox drops frames instead of queueing them.
"""

from __future__ import annotations

import sys
import threading
import time

from PyQt6.QtCore import QObject, QSize, Qt, QThreadPool, pyqtSignal
from PyQt6.QtGui import QImage

from deskdojo.core.errors import DeskdojoError
from deskdojo.vm.client import GuestClient
from deskdojo.vm.sandboxes import trust_for_socket


class LiveClient(GuestClient):
    """The panel's own connection to a sandbox (``screenshot_bgrx`` feeds QImages without
    a conversion)."""


def bgrx_to_qimage(buffer: bytes, width: int, height: int) -> QImage:
    """X's BGRX bytes as an owned QImage (RGB32 is BGRX in little-endian memory)."""
    if sys.byteorder != "little":  # pragma: no cover - every machine we run on is little-endian
        image = QImage(buffer, width, height, width * 4, QImage.Format.Format_RGBX8888)
        return image.rgbSwapped()
    return QImage(buffer, width, height, width * 4, QImage.Format.Format_RGB32).copy()


def rgb_to_qimage(array) -> QImage:
    """An (H, W, 3) uint8 RGB array (an Observation's screenshot) as an owned QImage."""
    height, width = array.shape[:2]
    data = array.tobytes() if not array.flags["C_CONTIGUOUS"] else array.data.tobytes()
    return QImage(data, width, height, width * 3, QImage.Format.Format_RGB888).copy()


class FrameGrabber(QObject):
    """Fetches frames for named sources on a thread pool; results arrive as signals.

    ``frame(key, image, screen_w, screen_h, fetch_ms)`` carries an image already scaled
    to the size asked for; ``failed(key, message)`` says why a fetch did not work.
    """

    frame = pyqtSignal(str, QImage, int, int, float)
    failed = pyqtSignal(str, str)

    def __init__(self, parent: QObject | None = None, *, threads: int = 4, timeout: float = 5.0):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self.timeout = timeout
        self._clients: dict[str, LiveClient] = {}
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False

    def busy(self, key: str) -> bool:
        with self._lock:
            return key in self._in_flight

    def request(self, key: str, socket_path: str, size: QSize | None = None) -> bool:
        """Start a fetch for ``key`` unless one is in flight; returns whether one started."""
        with self._lock:
            if self._closed or key in self._in_flight:
                return False
            self._in_flight.add(key)
        target = QSize(size) if size is not None else None
        self.pool.start(lambda: self._fetch(key, socket_path, target))
        return True

    def _client(self, socket_path: str) -> LiveClient:
        with self._lock:
            client = self._clients.get(socket_path)
            if client is None:
                client = self._clients[socket_path] = LiveClient(socket_path, timeout=self.timeout,
                                                                 **trust_for_socket(socket_path))
            return client

    def _fetch(self, key: str, socket_path: str, size: QSize | None) -> None:
        started = time.perf_counter()
        try:
            buffer, width, height = self._client(socket_path).screenshot_bgrx()
            image = bgrx_to_qimage(buffer, width, height)
            if size is not None and size.width() > 0 and size.height() > 0 and size != image.size():
                image = image.scaled(size, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.SmoothTransformation)
            elapsed = (time.perf_counter() - started) * 1000
            if not self._closed:
                self.frame.emit(key, image, width, height, elapsed)
        except (DeskdojoError, OSError, ValueError, KeyError) as exc:
            if not self._closed:
                self.failed.emit(key, str(exc))
        finally:
            with self._lock:
                self._in_flight.discard(key)

    def forget(self, socket_path: str) -> None:
        with self._lock:
            client = self._clients.pop(socket_path, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        """Stop taking requests, wait for the fetches in flight, close every connection."""
        with self._lock:
            self._closed = True
        self.pool.waitForDone(int(self.timeout * 1000) + 1000)
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

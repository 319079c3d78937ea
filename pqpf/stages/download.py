"""Fetch missing raw MRMS files from a web archive into the raw layout.

The public NOAA MRMS bucket (the default ``[mrms] download_url``) stores one gzipped
GRIB2 file per product and hour::

    {base}/{product}/{YYYYMMDD}/MRMS_{product}_{YYYYMMDD}-{HH}0000.grib2.gz

which is the layout :func:`pqpf.layout.mrms_raw_path` uses below ``mrms_raw_dir``, so a
downloaded file lands where the remapping stage looks for it. Only the standard library
is used (``urllib``); files are written atomically and an existing file is never
overwritten.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from pqpf.config import Config
from pqpf.errors import RemoteError
from pqpf.io.atomic import atomic_path
from pqpf.layout import mrms_raw_name, mrms_raw_path

__all__ = ["mrms_url", "download_hour"]

logger = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 1 << 20


def mrms_url(base_url: str, product: str, valid: dt.datetime) -> str:
    """URL of one hourly MRMS file below ``base_url`` (the public bucket's layout)."""
    return f"{base_url.rstrip('/')}/{product}/{valid:%Y%m%d}/{mrms_raw_name(product, valid)}"


def download_hour(
    config: Config,
    product: str,
    valid: dt.datetime,
    base_url: str | None = None,
    timeout_s: float = 30.0,
    retries: int = 2,
) -> Path | None:
    """Fetch one hour of an MRMS product into the raw layout unless it is already there.

    Parameters
    ----------
    config : Config
        Gives ``[paths] mrms_raw_dir`` and the default ``[mrms] download_url``.
    product : str
        MRMS product directory name, e.g. ``"MultiSensor_QPE_01H_Pass2_00.00"``.
    valid : datetime
        Valid hour (UTC).
    base_url : str, optional
        Archive root; ``config.mrms.download_url`` when omitted.
    timeout_s : float
        Socket timeout of each attempt, seconds.
    retries : int
        Further attempts after a failed one (network errors and 5xx answers), with a
        short back-off. A 404 is not retried.

    Returns
    -------
    Path or None
        The local file (existing or just downloaded); None when the server does not
        have the hour (HTTP 404).

    Raises
    ------
    RemoteError
        The download failed after all attempts, or the server sent something that is
        not a gzip file.
    """
    target = mrms_raw_path(config, product, valid)
    if target.is_file():
        return target
    url = mrms_url(base_url or config.mrms.download_url, product, valid)
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(2.0 ** (attempt - 1), 10.0))
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
                with atomic_path(target) as tmp:
                    with open(tmp, "wb") as out:
                        shutil.copyfileobj(response, out, _CHUNK_BYTES)
                    with open(tmp, "rb") as check:
                        head = check.read(2)
                    if head != _GZIP_MAGIC:
                        raise RemoteError(f"{url}: the server sent something that is not a gzip file")
            logger.info("downloaded %s", target.name)
            return target
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                logger.debug("%s: not on the server (404)", url)
                return None
            last_error = f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500:
                break
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            last_error = f"{type(exc).__name__}: {reason}"
        logger.debug("%s: attempt %d failed (%s)", url, attempt + 1, last_error)
    raise RemoteError(f"{url}: download failed after {retries + 1} attempt(s) ({last_error})")

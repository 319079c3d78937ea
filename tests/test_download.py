import datetime as dt
import functools
import http.server
import shutil
import threading

import pytest
from conftest import MRMS_CROP
from mrms_archive import QPE_PRODUCT, QUALITY_PRODUCT, small_lambert_grid, write_config, write_hour

from pqpf.cli.save_remapped_mrms import main
from pqpf.errors import RemoteError
from pqpf.layout import mrms_raw_path, mrms_remapped_path
from pqpf.stages.download import download_hour, mrms_url
from pqpf.stages.remap import remap_range

H14, H15, H16 = (dt.datetime(2022, 8, 9, h) for h in (14, 15, 16))


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        self.server.requests.append(self.path)


@pytest.fixture
def bucket(real_data, tmp_path):
    """A local web server on 127.0.0.1 serving a directory in the NOAA bucket layout
    with hours 14 and 15 of both products."""
    crop = real_data(MRMS_CROP)
    server_side = write_config(tmp_path / "server", None)  # to lay the files out
    for k, valid in enumerate((H14, H15)):
        write_hour(server_side, crop, valid, seed=k)
    root = server_side.paths.mrms_raw_dir
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    server.root = root
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def site(tmp_path, bucket):
    return write_config(tmp_path / "site", small_lambert_grid(), download_url=bucket.base_url)


def test_url_follows_the_public_bucket_layout():
    assert mrms_url("https://noaa-mrms-pds.s3.amazonaws.com/CONUS/", QPE_PRODUCT, H15) == (
        "https://noaa-mrms-pds.s3.amazonaws.com/CONUS/MultiSensor_QPE_01H_Pass2_00.00/20220809/"
        "MRMS_MultiSensor_QPE_01H_Pass2_00.00_20220809-150000.grib2.gz"
    )


def test_download_is_byte_identical_and_never_repeated(site, bucket):
    got = download_hour(site, QPE_PRODUCT, H14)
    assert got == mrms_raw_path(site, QPE_PRODUCT, H14)
    served = bucket.root / QPE_PRODUCT / "20220809" / got.name
    assert got.read_bytes() == served.read_bytes()
    assert bucket.requests == [f"/{QPE_PRODUCT}/20220809/{got.name}"]
    assert download_hour(site, QPE_PRODUCT, H14) == got
    assert len(bucket.requests) == 1  # already there: not fetched again
    assert download_hour(site, QPE_PRODUCT, H16) is None  # 404: not on the server
    assert not mrms_raw_path(site, QPE_PRODUCT, H16).exists()
    assert not [p for p in site.paths.mrms_raw_dir.rglob(".*")]


def test_bad_answers_raise_remote_error_and_leave_nothing(site, bucket, monkeypatch):
    # a 200 answer that is not gzip (e.g. a captive portal's HTML page)
    fake = (bucket.root / QUALITY_PRODUCT / "20220809"
            / "MRMS_RadarAccumulationQualityIndex_01H_00.00_20220809-170000.grib2.gz")
    fake.write_text("<html>log in first</html>")
    with pytest.raises(RemoteError, match="not a gzip file"):
        download_hour(site, QUALITY_PRODUCT, dt.datetime(2022, 8, 9, 17))
    assert not mrms_raw_path(site, QUALITY_PRODUCT, dt.datetime(2022, 8, 9, 17)).exists()
    # nobody listening: retried, then one clear error naming the URL
    sleeps = []
    monkeypatch.setattr("pqpf.stages.download.time.sleep", sleeps.append)
    with pytest.raises(RemoteError, match=r"http://127\.0\.0\.1:9/.*after 3 attempt"):
        download_hour(site, QPE_PRODUCT, H14, base_url="http://127.0.0.1:9", timeout_s=2)
    assert len(sleeps) == 2
    assert not [p for p in site.paths.mrms_raw_dir.rglob("*") if p.is_file()]


def test_range_with_download_fetches_only_missing_hours(site, bucket, real_data):
    # 15Z is already in the local raw archive; 14Z is on the server; 16Z is nowhere
    for product in (QPE_PRODUCT, QUALITY_PRODUCT):
        local = mrms_raw_path(site, product, H15)
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bucket.root / product / "20220809" / local.name, local)
    report = remap_range(site, H14, H16, download=True)
    assert report.written == [H14, H15]
    assert [r.valid for r in report.failed] == [H16]
    assert "not on the server" in report.failed[0].reason and QPE_PRODUCT in report.failed[0].reason
    fetched = sorted(p for p in bucket.requests if "-140000" in p)
    assert len(fetched) == 2  # QPE and quality of 14Z, once each
    assert not [p for p in bucket.requests if "-150000" in p]
    for product in (QPE_PRODUCT, QUALITY_PRODUCT):
        local = mrms_raw_path(site, product, H14)
        assert local.read_bytes() == (bucket.root / product / "20220809" / local.name).read_bytes()
    assert mrms_remapped_path(site, H14).is_file()


def test_cli_download_option(site, bucket, capsys):
    status = main(["2022080914", "2022080915", "--download", "--config", str(site.source), "-q"])
    assert status == 0
    assert "2 written, 0 skipped (already there), 0 failed" in capsys.readouterr().out
    assert len(bucket.requests) == 4
    # --download-url overrides the config (and implies --download)
    status = main(["2022080916", "2022080916", "--download-url", bucket.base_url + "/nothing",
                   "--config", str(site.source), "-q"])
    assert status == 1
    assert "2022080916: not on the server" in capsys.readouterr().err
    assert bucket.requests[-1].startswith("/nothing/")

import datetime as dt

import pytest

from pqpf.dates import (
    format_yyyymmddhh,
    from_epoch_seconds,
    hour_range,
    parse_yyyymmddhh,
    to_epoch_seconds,
    validate_lead,
)
from pqpf.errors import UsageError


def test_parse_roundtrips_a_real_date():
    when = parse_yyyymmddhh("2025120112")
    assert when == dt.datetime(2025, 12, 1, 12)
    assert format_yyyymmddhh(when) == "2025120112"


@pytest.mark.parametrize("text", ["2025023100", "2025130100", "2025010124", "2023022900", "202501010", "20250101xx",
                                  ""])
def test_parse_rejects_impossible_or_malformed_dates(text):
    with pytest.raises(UsageError) as err:
        parse_yyyymmddhh(text, what="INIT")
    assert "INIT" in str(err.value)
    assert "\n" not in str(err.value)


def test_leap_day_is_accepted():
    assert parse_yyyymmddhh("2024022912") == dt.datetime(2024, 2, 29, 12)


def test_lead_outside_configured_range_is_a_usage_error():
    assert validate_lead("12", 1, 48) == 12
    with pytest.raises(UsageError, match="outside the configured range 1..48"):
        validate_lead(49, 1, 48)
    with pytest.raises(UsageError, match="integer"):
        validate_lead("6.5", 1, 48)


def test_hour_range_is_inclusive_and_crosses_midnight():
    hours = list(hour_range(dt.datetime(2025, 1, 1, 22), dt.datetime(2025, 1, 2, 1)))
    assert [h.hour for h in hours] == [22, 23, 0, 1]
    with pytest.raises(UsageError, match="before BEGIN"):
        list(hour_range(dt.datetime(2025, 1, 2), dt.datetime(2025, 1, 1)))


def test_epoch_seconds_roundtrip():
    when = dt.datetime(2024, 4, 5, 12)
    assert to_epoch_seconds(when) == 1712318400
    assert from_epoch_seconds(1712318400) == when

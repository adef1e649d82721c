"""Reading the manufacture year from a note: shorthand, dates, decades, and numbers that are
not the year (mileage, codes, service dates, measurements)."""

from __future__ import annotations

import numpy as np
import pytest

from models.compliance.years import (
    N_FEATURES,
    THRESHOLDS,
    read_manufacture_year,
    year_features,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "year"),
    [
        ("Steel pump manufactured in 1995 in fair condition", 1995),
        ("mfd 1993 cast iron water pump", 1993),
        ("ALTERNATOR, BUILT 2006, OK", 2006),
        ("steel caliper, 2015, good", 2015),  # no word says so, nothing says otherwise
        ("caliper mfd '94 good", 1994),
        ("caliper mfd ’03 good", 2003),
        ("mfd. 94 steel", 1994),
        ("MY94 alu hub", 1994),
        ("yr: 97 alu", 1997),
        ("built 05, steel", 2005),
        ("c. 1987 iron", 1987),
        ("DOM 06/1992, fine", 1992),
        ("dom 1991-06 good", 1991),
        ("made 12.06.1993", 1993),
        ("Jun '93 build", 1993),
        ("1993-built pump", 1993),
        ("a 2001 build", 2001),
        ("Year of manufacture: 1992", 1992),
        ("date of manufacture 1999", 1999),
    ],
)
def test_years_as_technicians_write_them(text: str, year: int) -> None:
    reading = read_manufacture_year(text)
    assert reading is not None and reading.year == year


@pytest.mark.parametrize(
    ("text", "year"),
    [
        ("steering rack, early 90s, good", 1992),
        ("early nineties steel rack", 1992),
        ("late 80s iron hub", 1988),
        ("late nineties alu", 1998),
        ("made in the 1970s", 1975),
        ("the 2000s", 2005),
        ("mid-80s", 1985),
    ],
)
def test_decades_stand_for_a_year_inside_them(text: str, year: int) -> None:
    reading = read_manufacture_year(text)
    assert reading is not None and reading.year == year


@pytest.mark.parametrize(
    ("text", "year"),
    [
        ("odometer 1983 km, steel pump 2004", 2004),
        ("ref #1988. pump 2004", 2004),
        ("WO-1990 pump 2006", 2006),
        ("job 1994-22 pump 2008", 2008),
        ("part no. 1987 pump 2008", 2008),
        ("inspected 2023-05-12, mfd 1999", 1999),
        ("pump 2010 good, rebuilt 2019", 2010),
        ("rebuilt 2019; built 1990", 1990),
        ("steel, 2015, v good", 2015),  # "v" after a comma is not a unit of volts
        ("Invoice #1991. arm steel, manufactured 2010", 2010),
        ("arm steel manufactured 2010, last serviced 1999", 2010),
        ("tray alu 2018 good - battery date code 2016", 2018),
        ("pump 1994 2 x 1995", 1994),
    ],
)
def test_other_numbers_are_not_the_manufacture_year(text: str, year: int) -> None:
    reading = read_manufacture_year(text)
    assert reading is not None and reading.year == year


@pytest.mark.parametrize(
    "text",
    [
        "last serviced 2019",
        "torque 94 Nm",
        "steel 94 good",  # a bare two-digit number needs a word saying "year"
        "pump A1993 good",
        "approx 12 h labour",
        "odo 1,994 km",
        "coolant 50/50 mix",
        "battery 12.6 V",
        "no year visible, steel, good",
        "",
    ],
)
def test_no_manufacture_year(text: str) -> None:
    assert read_manufacture_year(text) is None


def test_a_word_saying_so_wins_over_an_earlier_plain_year() -> None:
    reading = read_manufacture_year("2015 invoice paid; pump mfd 1991")
    assert reading is not None and (reading.year, reading.cued) == (1991, True)
    plain = read_manufacture_year("steel pump 2004 good")
    assert plain is not None and not plain.cued


def test_year_features_are_thresholds_a_linear_model_can_cut() -> None:
    features = year_features(["mfd 1994", "mfd 1995", "steel, good"])
    assert features.shape == (3, N_FEATURES)
    at = THRESHOLDS.index(1995)
    assert features[0, at] == 1.0 and features[1, at] == 0.0  # 1994 < 1995, 1995 is not
    assert features[0, at - 1] == 0.0  # nor is 1994 < 1994
    assert features[0, -2] == 1.0  # "mfd" said it is the manufacture year
    assert features[2, -1] == 1.0 and not features[2, :-1].any()  # no year stated
    assert np.array_equal(year_features([]), np.zeros((0, N_FEATURES), dtype=np.float32))


def test_bare_decades_need_a_word_saying_year() -> None:
    assert read_manufacture_year("idle for 30s, steel pump") is None
    reading = read_manufacture_year("steel pump built 80s")
    assert reading is not None and reading.year == 1985
    reading = read_manufacture_year("steel pump, '80s, good")
    assert reading is not None and reading.year == 1985


@pytest.mark.parametrize(
    ("text", "year"),
    [
        ("coil spring, manefactured 76, brass", 1976),  # a misspelled cue is still a cue
        ("1993-buelt heat shield", 1993),
        ("road test done, 1971; like new", 1971),  # "test" belongs to another clause
        ("cond serviceable 2004", 2004),  # serviceable is a condition, not a service
        ("rebilt 2014; built 2000s", 2005),
    ],
)
def test_misspelled_cues_and_clauses(text: str, year: int) -> None:
    reading = read_manufacture_year(text)
    assert reading is not None and reading.year == year

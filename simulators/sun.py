"""The sun's altitude for a place and a moment: when streetlights should switch.

The low-precision solar position of the Astronomical Almanac (good to about 0.01 degree
for this century), which is far better than a lamp's light sensor.
"""

from __future__ import annotations

import math

J2000_EPOCH_S = 946_728_000.0  # 2000-01-01 12:00 UTC
#: Altitude of the sun's centre at sunrise and sunset (refraction and the disc's radius).
HORIZON_DEG = -0.833


def altitude_deg(lat: float, lon: float, epoch_s: float) -> float:
    """The sun's altitude in degrees above the horizon at (``lat``, ``lon``)."""
    d = (epoch_s - J2000_EPOCH_S) / 86_400.0
    g = math.radians((357.529 + 0.98560028 * d) % 360)
    q = (280.459 + 0.98564736 * d) % 360
    ecliptic_lon = math.radians(q + 1.915 * math.sin(g) + 0.020 * math.sin(2 * g))
    obliquity = math.radians(23.439 - 0.00000036 * d)
    right_ascension = math.atan2(math.cos(obliquity) * math.sin(ecliptic_lon),
                                 math.cos(ecliptic_lon))
    declination = math.asin(math.sin(obliquity) * math.sin(ecliptic_lon))
    sidereal_deg = ((18.697374558 + 24.06570982441908 * d) % 24) * 15 + lon
    hour_angle = math.radians(sidereal_deg) - right_ascension
    phi = math.radians(lat)
    sin_alt = (math.sin(phi) * math.sin(declination)
               + math.cos(phi) * math.cos(declination) * math.cos(hour_angle))
    return math.degrees(math.asin(max(-1.0, min(1.0, sin_alt))))


def is_dark(lat: float, lon: float, epoch_s: float) -> bool:
    """True between sunset and sunrise."""
    return altitude_deg(lat, lon, epoch_s) < HORIZON_DEG

"""The load line every benchmark prints: the 1/5/15-minute load average, flagged when above the core count
(then wall-time figures are not comparable to an idle run; CPU-time ratios hold better)."""

from __future__ import annotations

import os


def load_line(label: str = "load average") -> str:
    one, five, fifteen = os.getloadavg()
    cores = os.cpu_count() or 1
    flag = f"  ** above the {cores} cores: wall times are not comparable to an idle run **" if one > cores else ""
    return f"{label}: {one:.2f} {five:.2f} {fifteen:.2f} on {cores} cores{flag}"

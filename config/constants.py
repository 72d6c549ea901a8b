"""Physical constants shared by the whole code: one home each (docs/design.md §10)."""

#: Standard gravity, m/s² (CGPM 1901): body weight BW = mass × G (docs/metrics.md §3).
G = 9.80665

"""Checks on compiled HLO text."""

COLLECTIVES = ("collective-permute", "all-gather", "all-to-all", "all-reduce", "reduce-scatter")


def assert_no_collectives(hlo_text):
  """The program moves no data between devices."""
  for collective in COLLECTIVES:
    assert collective not in hlo_text, collective

"""What the trainer needs to know about a dataset before reading it."""
import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Sizes over all processes."""

  num_classes: int
  num_train: int
  num_eval: int
